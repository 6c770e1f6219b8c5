"""Pretraining a FASTerVLA vision tower to locate things in its frames, and loading the result.

FASTerVLA reads the camera through a VLM's pretrained vision tower (SigLIP in PaliGemma). A
policy trained from scratch on this CPU has no such tower: it learns to see only through the
action-token loss, and with 150 demonstrations that signal is too weak. The tiny ALOHA policy
reached for the cube 6-12 cm away from it in most failed episodes (the cube spans 2 px of a
64x64 frame), while the same tower regressing the cube's position directly learned it to about
1 cm in a minute. So, as a stand-in for the pretrained tower, the tower and its projector are
pretrained here on frames labelled with a position (rendered in simulation, where the labels
are free), then loaded into the policy before its training (``train --vision-init``).

    pretrain_vision(cfg, images (N, S, S, 3) uint8, targets (N, K)) -> PretrainResult
    save_vision(dir, cfg, result)       -> dir/vision.safetensors + dir/vision.json
    load_vision_init(backbone, cfg, dir) -> copies them into a policy's backbone

The head (a per-token projection, flattened, then an MLP: a readout that keeps where each token
is) is thrown away; only the tower and projector are saved, under the backbone's own key names.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from faster_ros.policy.backbones import Backbone, build_backbone
from faster_ros.policy.configuration import FASTerVLAConfig
from faster_ros.policy.processor import PromptProcessor

WEIGHTS = "vision.safetensors"
META = "vision.json"
# the backbone's submodules that turn pixels into image tokens, per family
VISION_PREFIXES = {"paligemma": ("vision_tower.", "multi_modal_projector."),
                   "smolvlm": ("vision_model.", "connector.")}
# config fields the saved tower must share with the policy that loads it
SHAPE_FIELDS = ("backbone", "image_size", "patch_size", "pixel_shuffle", "vision_width",
                "vision_layers", "vision_heads", "vision_mlp", "text_width")


def vision_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The tower's and projector's tensors, keyed as in ``backbone.inner``."""
    prefixes = VISION_PREFIXES[backbone.family]
    return {k: v for k, v in backbone.inner.state_dict().items() if k.startswith(prefixes)}


def vision_parameters(backbone: Backbone) -> list[nn.Parameter]:
    """The tower's and projector's parameters."""
    prefixes = VISION_PREFIXES[backbone.family]
    return [p for k, p in backbone.inner.named_parameters() if k.startswith(prefixes)]


class PositionHead(nn.Module):
    """(B, T, D) image tokens -> (B, K): each token projected to 8 values, concatenated in
    token order (so the readout knows where in the frame each token is), then an MLP."""

    def __init__(self, tokens: int, width: int, outputs: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 8), nn.Flatten(),
                                 nn.Linear(tokens * 8, hidden), nn.GELU(),
                                 nn.Linear(hidden, outputs))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(tokens)


@dataclass(frozen=True)
class PretrainResult:
    state: dict[str, torch.Tensor]  # the tower's and projector's tensors
    val_error: float  # mean Euclidean error on the validation frames, in target units
    val_error_p90: float
    history: list[tuple[int, float, float]]  # (step, train loss, validation mean error)
    wall_time_s: float


def pretrain_vision(cfg: FASTerVLAConfig, images: np.ndarray, targets: np.ndarray, *,
                    steps: int = 6000, batch_size: int = 64, lr: float = 1e-3,
                    val_fraction: float = 0.04, seed: int = 0, eval_every: int = 500,
                    progress: bool = True) -> PretrainResult:
    """Train ``cfg``'s vision tower + projector (random init) and a :class:`PositionHead` to
    regress ``targets`` (N, K) from ``images`` (N, S, S, 3) uint8 at the policy's input size
    (already cropped and resized as :class:`PromptProcessor` does). L2 loss on the targets
    standardised per column, AdamW, linear warm-up then cosine decay. The first
    ``val_fraction`` of the frames is held out for the reported error."""
    images, targets = np.asarray(images), np.asarray(targets, dtype=np.float32)
    s = cfg.image_size
    if images.ndim != 4 or images.shape[1:] != (s, s, 3) or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, {s}, {s}, 3) uint8 (the config's image_size), got "
                         f"{images.shape} {images.dtype}")
    if targets.ndim != 2 or len(targets) != len(images) or not np.isfinite(targets).all():
        raise ValueError(f"targets must be (N={len(images)}, K) finite, got {targets.shape}")
    n_val = max(1, int(round(len(images) * val_fraction)))
    if len(images) - n_val < batch_size:
        raise ValueError(f"{len(images)} frames: too few for batch {batch_size} after holding "
                         f"out {n_val}")
    torch.manual_seed(seed)
    backbone = build_backbone(cfg, vocab_size=8)
    mean, std = targets.mean(0), targets.std(0) + 1e-6
    norm = torch.as_tensor((targets - mean) / std)
    with torch.no_grad():
        tokens = backbone.embed_images(PromptProcessor.normalize(images[:1])[:, None]).shape[1]
    head = PositionHead(tokens, cfg.text_width, targets.shape[1])
    opt = torch.optim.AdamW(vision_parameters(backbone) + list(head.parameters()), lr=lr,
                            weight_decay=1e-4)
    warm = min(100, steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(k / steps, 1.0))))

    def predict(x: np.ndarray) -> torch.Tensor:  # (B, S, S, 3) uint8 -> (B, K) standardised
        return head(backbone.embed_images(PromptProcessor.normalize(x)[:, None]))

    def val_errors() -> np.ndarray:
        with torch.no_grad():
            pred = torch.cat([predict(images[i:min(i + 256, n_val)])
                              for i in range(0, n_val, 256)]).numpy()
        return np.linalg.norm((pred - norm[:n_val].numpy()) * std, axis=1)

    rng = np.random.default_rng(seed)
    history: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="vision pretraining", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        idx = rng.integers(n_val, len(images), size=batch_size)
        loss = nn.functional.mse_loss(predict(images[idx]), norm[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            err = float(val_errors().mean())
            history.append((step + 1, float(loss.detach()), err))
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{err:.4g}")
    errors = val_errors()
    return PretrainResult(vision_state(backbone), float(errors.mean()),
                          float(np.percentile(errors, 90)), history,
                          time.perf_counter() - start)


def save_vision(directory: str | Path, cfg: FASTerVLAConfig, result: PretrainResult,
                **provenance: Any) -> Path:
    """``vision.safetensors`` (the tensors) and ``vision.json`` (the shape fields the loading
    policy must share, the validation error and ``provenance``) in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in result.state.items()}, out / WEIGHTS)
    meta = dict(config={f: getattr(cfg, f) for f in SHAPE_FIELDS},
                image_crop=list(cfg.image_crop), val_error=round(result.val_error, 5),
                val_error_p90=round(result.val_error_p90, 5),
                history=[list(h) for h in result.history],
                wall_time_s=round(result.wall_time_s, 1), provenance=provenance)
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_vision_init(backbone: Backbone, cfg: FASTerVLAConfig,
                     directory: str | Path) -> dict[str, Any]:
    """Copy a :func:`save_vision` tower into ``backbone`` (built from ``cfg``). Raises
    ValueError naming what differs when the tower was pretrained for another shape or crop, or
    when a tensor is missing. Returns the saved ``vision.json``."""
    path = Path(directory)
    if not (path / WEIGHTS).is_file() or not (path / META).is_file():
        raise FileNotFoundError(f"{path}: no pretrained vision tower ({WEIGHTS} + {META})")
    meta = json.loads((path / META).read_text())
    saved = meta.get("config", {})
    wrong = [f"{f} {saved.get(f)!r} (policy: {getattr(cfg, f)!r})" for f in SHAPE_FIELDS
             if saved.get(f) != getattr(cfg, f)]
    if [float(x) for x in meta.get("image_crop", [])] != list(cfg.image_crop):
        wrong.append(f"image_crop {meta.get('image_crop')} (policy: {list(cfg.image_crop)})")
    if wrong:
        raise ValueError(f"{path}: vision tower pretrained for another input: " +
                         "; ".join(wrong))
    tensors = load_file(path / WEIGHTS)
    ours = vision_state(backbone)
    missing = sorted(set(ours) - set(tensors))
    extra = sorted(set(tensors) - set(ours))
    if missing or extra:
        raise ValueError(f"{path}: tensors do not match the policy's tower (missing "
                         f"{missing[:3]}, unexpected {extra[:3]})")
    backbone.inner.load_state_dict(tensors, strict=False)
    return meta
