"""Evaluation reports: the paper's table layout (markdown, also printed), a JSON record and PNG plots.

Tables show percentages with two decimals (EMER overlaps on their 1-10 scale), as the paper does; "-" marks a
dataset the labels do not hold, "–" (en dash) one they hold but without any prediction (listed in report.md). Plots
(matplotlib, Agg): a confusion matrix per MER / MIR dataset (a diagnostic: MER answers are open-set, mapped
to the dataset's classes through wheel 1), the main score per dataset, and the mean fusion-gate weight per
task when the predictions carry gates (the paper's Fig. 6c).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nanoemox_jax.evaluate import mer_unibench
from nanoemox_jax.evaluate.suite import FAMILIES, family_of, main_score, scored

NAMES = {"mer2023": "MER2023", "mer2024": "MER2024", "meld": "MELD", "iemocap": "IEMOCAP", "mosi": "MOSI",
         "mosei": "MOSEI", "sims": "SIMS", "simsv2": "SIMSv2", "ovmerd": "OV-MERD", "mintrec": "MIntRec",
         "mintrec2": "MIntRec2.0", "avamerg": "AvaMERG", "emer": "EMER"}
# (column title, metric) per family, in the paper's order.
COLUMNS = {
    "mintrec": (("ACC", "accuracy"), ("WF1", "weighted_f1"), ("WP", "weighted_precision"),
                ("macro F1", "macro_f1"), ("macro P", "macro_precision"), ("macro R", "macro_recall")),
    "avamerg": (("Acc", "accuracy"), ("Hit", "hit_rate"), ("Dist-1", "dist1"), ("Dist-2", "dist2")),
    "emer": (("Clue overlap", "clue_overlap"), ("Label overlap", "label_overlap")),
}
PROTOCOL_TEXT = {"fixed": "fixed checkpoint", "best": "best checkpoint of the range, per dataset"}
MODEL_NAME = "Nano-EmoX (ours)"
UNSCORED = "–"  # the labels hold the dataset, no prediction matches its records


def _value(result: Mapping[str, Any], metric: str) -> str:
  if not scored(result):
    return UNSCORED
  value = result["scores"][metric]
  return f"{value:.2f}" if result.get("scale") == 10 else f"{100 * value:.2f}"


def unscored(selected: Mapping[str, Mapping[str, Any]]) -> list[str]:
  """The selected datasets without any prediction."""
  return [d for d, r in selected.items() if not scored(r)]


def _row(cells: Sequence[str]) -> str:
  return "| " + " | ".join(cells) + " |"


def tables(selected: Mapping[str, Mapping[str, Any]], average: Mapping[str, Any] | None, protocol: str,
           model_name: str = MODEL_NAME) -> str:
  """Markdown tables, one per benchmark family present, in the paper's layout; `model_name` heads the
  MER-UniBench row."""
  out = []
  for family, datasets in FAMILIES.items():
    present = [d for d in datasets if d in selected]
    if not present:
      continue
    if family == "merunibench":
      head = ["model"] + [NAMES[d] for d in mer_unibench.DATASETS] + ["Avg"]
      cells = [_value(selected[d], selected[d]["main"]) if d in selected else "-" for d in mer_unibench.DATASETS]
      avg = f"{100 * average['value']:.2f}" if average else "-"
      if average and len(average["datasets"]) < len(mer_unibench.DATASETS):
        avg += f" ({len(average['datasets'])}/{len(mer_unibench.DATASETS)})"
      rows = [[model_name] + cells + [avg],
              ["checkpoint"] + [selected[d]["checkpoint"] if d in selected else "-" for d in mer_unibench.DATASETS]
              + [""]]
    else:
      head = ["dataset"] + [title for title, _ in COLUMNS[family]] + ["checkpoint"]
      rows = [[NAMES[d]] + [_value(selected[d], m) for _, m in COLUMNS[family]] + [selected[d]["checkpoint"]]
              for d in present]
    out += [f"**{family}** ({PROTOCOL_TEXT[protocol]})", "", _row(head), _row(["---"] * len(head))]
    out += [_row(r) for r in rows] + [""]
  if any(family_of(d) == "merunibench" for d in selected):
    out.append("MER2023-IEMOCAP: hit rate; MOSI-SIMSv2: weighted F1; OV-MERD: F score; each the mean over five "
               "emotion wheels where wheels apply.")
  if any(family_of(d) == "mintrec" for d in selected):
    out.append("MIntRec: ACC / WF1 / WP exact label match (paper protocol); macro F1 / P / R over the intent "
               "classes (dataset authors' protocol).")
  if missing := unscored(selected):
    out.append(f"{UNSCORED}: no prediction for any record of {', '.join(NAMES[d] for d in missing)}.")
  return "\n".join(out).rstrip() + "\n"


def _confusion(ax, confusion: Mapping[str, Any], title: str) -> None:
  classes = list(confusion["classes"])
  index = {c: i for i, c in enumerate(classes)}
  counts = [[0] * len(classes) for _ in classes]
  for t, p in zip(confusion["truth"], confusion["predicted"]):
    counts[index.get(t, len(classes) - 1)][index[p]] += 1
  ax.imshow(counts, cmap="Blues")
  ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
  ax.set_yticks(range(len(classes)), classes, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("truth")
  ax.set_title(title)
  top = max(max(row) for row in counts)
  for i, row in enumerate(counts):
    for j, n in enumerate(row):
      if n:
        ax.text(j, i, str(n), ha="center", va="center", fontsize=6, color="white" if n > top / 2 else "black")


def plots(out: Path, selected: Mapping[str, Mapping[str, Any]], gates: Mapping[str, Mapping[str, float]]
          ) -> list[Path]:
  """Writes the PNGs; returns their paths."""
  written = []
  for d, r in selected.items():
    if "confusion" in r:
      size = 3 + 0.3 * len(r["confusion"]["classes"])
      fig, ax = plt.subplots(figsize=(size, size))
      _confusion(ax, r["confusion"], f"{NAMES[d]} ({r['checkpoint']})")
      written.append(_save(fig, out / f"confusion_{d}.png"))
  names = [d for d, r in selected.items() if scored(r)]
  fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(names), 4))
  values = [main_score(selected[d]) * (10 if selected[d].get("scale") == 10 else 100) for d in names]
  ax.bar([NAMES[d] for d in names], values, color="tab:blue")
  ax.set_ylabel("main score (%; EMER: 10 x its 1-10 score)" if "emer" in selected else "main score (%)")
  ax.tick_params(axis="x", rotation=45)
  for i, v in enumerate(values):
    ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
  written.append(_save(fig, out / "datasets.png"))
  if gates:
    tasks = sorted(gates)
    gate_names = sorted({g for t in tasks for g in gates[t]})
    fig, ax = plt.subplots(figsize=(2 + 1.2 * len(tasks), 4))
    width = 0.8 / len(gate_names)
    for k, g in enumerate(gate_names):
      ax.bar([i + k * width for i in range(len(tasks))], [gates[t].get(g, 0.0) for t in tasks], width, label=g)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks)
    ax.set_ylabel("mean gate weight")
    ax.set_title("fusion gate weights per task")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "gates.png"))
  return written


def _save(fig, path: Path) -> Path:
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def write(out: str | Path, record: Mapping[str, Any], table: str,
          gates: Mapping[str, Mapping[str, float]]) -> list[Path]:
  """report.md (table, protocol, judge, per-checkpoint main scores, counts), scores.json (`record`) and plots."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  judge, on_disk = record["judge"], record.get("judge_replies_on_disk")
  lines = ["# Evaluation report", "", f"- model: {record['model']}", f"- benchmark: {record['benchmark']}",
           f"- checkpoint selection: {PROTOCOL_TEXT[record['protocol']]}",
           f"- judge: {json.dumps(judge) if judge else 'none'}" + (
               f"; {on_disk} judge replies read from the predictions, used without a query" if on_disk
               else "" if judge else " (label lists read from the answers)"),
           f"- predictions: {', '.join(record['predictions'])}", f"- labels: {record['labels']}"]
  if missing := unscored(record["selected"]):
    lines.append(f"- without any prediction (not scored, {UNSCORED} in the tables): " + ", ".join(
        f"{NAMES[d]} ({record['selected'][d]['missing']} records)" for d in missing))
  lines += ["", table, "", "## Per checkpoint (main score)", ""]
  checkpoints = record["checkpoints"]
  datasets = list(next(iter(checkpoints.values())))
  lines += [_row(["checkpoint"] + [NAMES[d] for d in datasets]), _row(["---"] * (len(datasets) + 1))]
  lines += [_row([c] + [_value(r[d], r[d]["main"]) for d in datasets]) for c, r in checkpoints.items()]
  lines += ["", "## Samples", "", _row(["dataset", "with a prediction", "without"]), _row(["---"] * 3)]
  lines += [_row([NAMES[d], str(r["n"]), str(r["missing"])]) for d, r in record["selected"].items()]
  (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
  (out / "scores.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
  return [out / "report.md", out / "scores.json"] + plots(out, record["selected"], gates)
