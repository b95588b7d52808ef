"""The package's layers import only downward, and no module imports itself back through others.

  model  <  checkpoints  <  data  <  infer, evaluate, converters  <  train  <  demo, benchmarks, configs

`nanoemox_jax/__init__.py` (the public facade) sits above them all. Every import is parsed from the source,
those inside functions included.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"nanoemox_jax.model": 0, "nanoemox_jax.checkpoints": 1, "nanoemox_jax.data": 2, "nanoemox_jax.infer": 3,
          "nanoemox_jax.evaluate": 3, "converters": 3, "nanoemox_jax.train": 4, "nanoemox_jax.demo": 5,
          "benchmarks": 5, "configs": 5, "nanoemox_jax": 6}
TOP_LEVEL = ("nanoemox_jax", "converters", "benchmarks", "configs")


def modules(root: Path) -> dict[str, Path]:
  """Dotted module name -> file, for every .py file of the checked packages under `root`."""
  out = {}
  for package in TOP_LEVEL:
    for path in sorted((root / package).rglob("*.py")):
      parts = path.relative_to(root).with_suffix("").parts
      out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return out


def layer_of(name: str) -> tuple[str, int]:
  """The layer (longest matching prefix of LAYERS) of a dotted module name."""
  prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
  return prefix, LAYERS[prefix]


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
  """The checked modules that module `name` imports (`from a import b` counts a.b when b is a module)."""
  found = set()
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    else:
      continue
    for target in targets:
      while target and target not in known:  # `import a.b.c` of a module of a package: the closest module
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def violations(root: Path) -> list[str]:
  """Upward imports and import cycles under `root`, each naming the files involved."""
  known = modules(root)
  graph = {name: imports(name, path, known) for name, path in known.items()}
  problems = []
  for name, targets in graph.items():
    (own, level) = layer_of(name)
    for target in sorted(targets):
      (other, target_level) = layer_of(target)
      if target_level > level:
        problems.append(f"upward import: {known[name].relative_to(root)} ({own}, layer {level}) imports "
                        f"{known[target].relative_to(root)} ({other}, layer {target_level})")
  state: dict[str, int] = {}  # 1: on the current path, 2: done

  def visit(name: str, stack: list[str]) -> None:
    state[name] = 1
    for target in sorted(graph[name]):
      if state.get(target) == 1:
        cycle = stack[stack.index(target):] + [target]
        problems.append("import cycle: " + " -> ".join(str(known[m].relative_to(root)) for m in cycle))
      elif target not in state:
        visit(target, stack + [target])
    state[name] = 2

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])
  return problems


def test_layers_import_only_downward_without_cycles():
  problems = violations(ROOT)
  assert not problems, "\n".join(problems)


def test_a_planted_upward_import_and_cycle_are_named(tmp_path):
  for package in TOP_LEVEL:
    shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc", "__pycache__",
                                                                                       "qwen2_tokenizer"))
  fusion = tmp_path / "nanoemox_jax" / "model" / "fusion.py"
  fusion.write_text(fusion.read_text() + "\n\ndef _planted():\n  from nanoemox_jax.train import loop\n")
  pipeline = tmp_path / "nanoemox_jax" / "data" / "pipeline.py"
  pipeline.write_text("from nanoemox_jax.data import templates\n" + pipeline.read_text())
  templates = tmp_path / "nanoemox_jax" / "data" / "templates.py"
  templates.write_text("from nanoemox_jax.data import pipeline\n" + templates.read_text())
  problems = violations(tmp_path)
  assert ("upward import: nanoemox_jax/model/fusion.py (nanoemox_jax.model, layer 0) imports "
          "nanoemox_jax/train/loop.py (nanoemox_jax.train, layer 4)") in problems, problems
  assert any(p.startswith("import cycle:") and "nanoemox_jax/data/pipeline.py" in p
             and "nanoemox_jax/data/templates.py" in p for p in problems), problems


def test_the_facade_names_resolve():
  import nanoemox_jax

  for name in nanoemox_jax.__all__:
    assert getattr(nanoemox_jax, name) is not None, name
  assert nanoemox_jax.load.__module__ == "nanoemox_jax.checkpoints.parts"
  assert nanoemox_jax.run.__module__ == "nanoemox_jax.train.loop"
