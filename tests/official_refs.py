"""PyTorch re-expressions with the authors' parameter names: the trainable heads and FaceXFormer's encoder.

Used by the tests and the benchmarks as independent references."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from torchvision.models.swin_transformer import SwinTransformer


class TorchFusion(nn.Module):
  """The authors' `MultiScaleCrossModalFusion` structure (+ their separate `multi_llama_proj`)."""

  def __init__(self, audio_dim: int, visual_dim: int, hidden: int, heads: int, experts: int, gate: bool = True):
    super().__init__()
    self.audio_proj, self.visual_proj = nn.Linear(audio_dim, hidden), nn.Linear(visual_dim, hidden)
    self.cross_attns = nn.ModuleList(nn.MultiheadAttention(hidden, heads, batch_first=True) for _ in range(experts))
    self.ffns = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(0.1),
                                            nn.Linear(hidden, hidden)) for _ in range(experts))
    self.gate_mlp = nn.Sequential(nn.Linear(hidden * experts, hidden), nn.GELU(), nn.Dropout(0.1),
                                  nn.Linear(hidden, experts), nn.Softmax(dim=-1)) if gate else None
    self.experts = experts

  def forward(self, audio_layers: list[torch.Tensor], visual_layers: list[torch.Tensor]):
    outs = []
    for i in range(self.experts):
      a, v = self.audio_proj(audio_layers[i]), self.visual_proj(visual_layers[i])
      h = self.cross_attns[i](a, v, v)[0] + a
      outs.append(self.ffns[i](h) + h)
    if self.gate_mlp is None:
      w = torch.full((outs[0].shape[0], self.experts), 1.0 / self.experts)
    else:
      w = self.gate_mlp(torch.cat(outs, -1).mean(1))
    return sum(w[:, i, None, None] * outs[i] for i in range(self.experts)), w


class TorchFaceTemporal(nn.Module):
  """The authors' `FacialEncoderFxformer` head: `query`, `attn`, `lynorm` (unused), `face_proj`."""

  def __init__(self, width: int, queries: int, heads: int, hidden: int, llm_dim: int):
    super().__init__()
    self.query = nn.Parameter(torch.randn(queries, width))
    self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
    self.lynorm = nn.LayerNorm(width)
    self.face_proj = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, llm_dim))

  def forward(self, faces: torch.Tensor) -> torch.Tensor:
    query = self.query.unsqueeze(0).repeat(faces.shape[0], 1, 1)
    return self.face_proj(self.attn(query, faces, faces)[0])


def lavis_qformer_state(hf: transformers.Blip2QFormerModel, prefix: str) -> dict[str, torch.Tensor]:
  """HF Blip2 Q-Former weights under LAVIS names, as the authors' `{video,audio}_Qformer` saves them."""
  out = {}
  for key, value in hf.state_dict().items():
    key = key.replace("layernorm.", "embeddings.LayerNorm.").replace(".attention.attention.", ".attention.self.")
    key = key.replace(".crossattention.attention.", ".crossattention.self.")
    out[f"{prefix}.bert.{key}"] = value
  out[f"{prefix}.bert.embeddings.position_ids"] = torch.arange(512)[None]  # a buffer their checkpoints carry
  return out


def perturb_(module: nn.Module, scale: float = 0.1) -> None:
  """Move norms and biases away from 1 and 0 so the tests see them."""
  with torch.no_grad():
    for name, p in module.named_parameters():
      if "norm" in name.lower() or name.endswith("bias"):
        p.add_(scale * torch.randn_like(p))


class TorchFaceXFormer(torch.nn.Module):
  """FaceXFormer's encoder half in PyTorch: a torchvision Swin without its head as `backbone` (so the keys
  read `backbone.0.*`, `backbone.1.*`), `linear_c[i].proj` to `hidden`, bilinear upsampling to the stage-1
  size, deepest-first concatenation, `linear_fuse` (1x1 conv, no bias), spatial mean."""

  def __init__(self, swin_model: SwinTransformer, hidden: int):
    super().__init__()
    self.backbone = torch.nn.Sequential(*list(swin_model.children())[:-1])
    dims = [swin_model.features[2 * i + 1][0].norm1.normalized_shape[0] for i in range(4)]
    self.linear_c = torch.nn.ModuleList(torch.nn.Module() for _ in dims)
    for mlp, dim in zip(self.linear_c, dims):
      mlp.proj = torch.nn.Linear(dim, hidden)
    self.linear_fuse = torch.nn.Conv2d(4 * hidden, hidden, kernel_size=1, bias=False)

  def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stage outputs [B, H, W, C] and pooled face vectors [B, hidden] (what our `face` model returns)."""
    stages, h = [], x
    for i, layer in enumerate(self.backbone[0]):
      h = layer(h)
      if i % 2:
        stages.append(h)
    size = stages[0].shape[1:3]
    maps = [F.interpolate(mlp.proj(s).permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
            for s, mlp in zip(stages, self.linear_c)]
    fused = self.linear_fuse(torch.cat(maps[::-1], dim=1))  # [B, hidden, H/4, W/4]
    return stages, fused.mean(dim=(2, 3))
