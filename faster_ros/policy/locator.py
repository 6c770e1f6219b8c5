"""An object locator: one camera frame -> the position of the object a task is about.

The ALOHA policies trained here from scratch never learned where the cube is from the action
loss alone: across 20 cube poses their first chunk was the same (``bench/sim_probes.py
first-chunk``), though the cube's position could be read linearly from their own image tokens.
Given the cube's position as numbers in the prompt instead (an oracle: the simulator's
value), the same recipe's first chunk followed the cube (0.83 cm from the expert's, the mean
plan 1.96 cm). A locator is how a policy gets those numbers on a robot: a small network,
trained on frames labelled with the object's position (free in simulation; a detector or a
motion-capture session on hardware), whose estimate the policy reads as ``object`` bins in its
prompt (:class:`faster_ros.policy.processor.PromptProcessor`). The policy runs it on the camera
frame itself, so nodes, bags and the sim evaluation need nothing new.

    LocatorConfig(camera, crop, height, width, names)   what it looks at and what it outputs
    ObjectLocator(cfg)                                  the network; .locate(frames) -> (N, K)
    train_locator(cfg, images, targets)                 -> (ObjectLocator, LocatorReport)
    ObjectLocator.save(dir) / ObjectLocator.load(dir)   locator.safetensors + locator.json

The network: a conv stem at a quarter of the crop's resolution, a spatial softmax per feature
map (the expected (x, y) of each map: Levine et al. 2016, robomimic's low-data encoder) and an
MLP from those coordinates to the outputs, in units of the labels (metres here).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from faster_ros.policy.processor import PromptProcessor, resize_frame

LOCATOR_DIR = "locator"
WEIGHTS = "locator.safetensors"
META = "locator.json"


@dataclass(frozen=True)
class LocatorConfig:
    """``camera``: the frame it reads (matched like the policy's cameras); ``crop`` (top, left,
    bottom, right) fractions of the frame (empty: all of it), resized to ``height`` x
    ``width``; ``names``: one per output (e.g. cube_x, cube_y, cube_z); ``maps``: feature maps
    (keypoints) of the spatial softmax."""

    camera: str
    names: tuple[str, ...]
    crop: tuple[float, ...] = ()
    height: int = 96
    width: int = 128
    maps: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "crop", tuple(float(c) for c in self.crop))
        if not self.names:
            raise ValueError("LocatorConfig.names: at least one output")
        if self.crop and (len(self.crop) != 4 or not (0.0 <= self.crop[0] < self.crop[2] <= 1.0
                                                       and 0.0 <= self.crop[1] < self.crop[3]
                                                       <= 1.0)):
            raise ValueError(f"LocatorConfig.crop must be (top, left, bottom, right) fractions "
                             f"in [0, 1] with top < bottom, left < right, got {self.crop!r}")
        for name in ("height", "width", "maps"):
            if getattr(self, name) < 1:
                raise ValueError(f"LocatorConfig.{name} must be positive, got "
                                 f"{getattr(self, name)}")
        if self.height % 4 or self.width % 4:
            raise ValueError(f"LocatorConfig: height and width must be multiples of 4, got "
                             f"{self.height} x {self.width}")

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 camera frame -> (height, width, 3) uint8: the crop, then the resize."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"locator frame must be (H, W, 3) uint8 RGB, got {frame.shape} "
                             f"{frame.dtype}")
        return np.ascontiguousarray(resize_frame(frame, (self.height, self.width), self.crop))


def spatial_softmax(maps: torch.Tensor, log_temperature: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) maps -> (N, C, 2) expected (x, y) in [-1, 1] under each map's softmax at
    temperature exp(``log_temperature``)."""
    n, c, h, w = maps.shape
    weights = (maps.flatten(2) / log_temperature.exp()).softmax(-1).view(n, c, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=weights.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=weights.dtype)
    return torch.stack([(weights.sum(2) * xs).sum(-1), (weights.sum(3) * ys).sum(-1)], -1)


class SpatialSoftmax(nn.Module):
    """:func:`spatial_softmax` with a learned temperature."""

    def __init__(self):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return spatial_softmax(maps, self.log_temperature)


class ObjectLocator(nn.Module):
    """Prepared frames -> object position (see the module docstring). The label mean / std are
    buffers, so a loaded locator outputs label units."""

    def __init__(self, cfg: LocatorConfig, channels: int = 16):
        super().__init__()
        self.cfg = cfg
        c = channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, cfg.maps, 1))
        self.softmax = SpatialSoftmax()
        k = len(cfg.names)
        self.head = nn.Sequential(nn.Linear(2 * cfg.maps, 128), nn.GELU(), nn.Linear(128, k))
        self.register_buffer("mean", torch.zeros(k))
        self.register_buffer("std", torch.ones(k))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, height, width) in [-1, 1] -> (N, K) standardised outputs."""
        return self.head(self.softmax(self.stem(pixels)).flatten(1))

    @torch.no_grad()
    def locate(self, frames: np.ndarray | list[np.ndarray], prepared: bool = False,
               batch: int = 256) -> np.ndarray:
        """Camera frames (N of (H, W, 3) uint8; ``prepared``: already cropped and resized) ->
        (N, K) float32 positions in label units."""
        if not prepared:
            frames = np.stack([self.cfg.prepare(f) for f in frames])
        frames = np.asarray(frames)
        dtype = self.mean.dtype
        out = [self(PromptProcessor.normalize(frames[i:i + batch]).to(self.mean.device, dtype))
               for i in range(0, len(frames), batch)]
        return (torch.cat(out) * self.std + self.mean).float().cpu().numpy()

    # ------------------------------------------------------------------ I/O
    def save(self, directory: str | Path, **provenance) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  out / WEIGHTS)
        meta = dict(config=asdict(self.cfg), provenance=provenance)
        (out / META).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def config_from(cls, directory: str | Path) -> LocatorConfig:
        path = Path(directory) / META
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no object locator ({META})")
        return LocatorConfig(**json.loads(path.read_text())["config"])

    @classmethod
    def load(cls, directory: str | Path) -> ObjectLocator:
        """A saved locator (``locator.json`` + ``locator.safetensors``), in eval mode."""
        model = cls(cls.config_from(directory))
        model.load_state_dict(load_file(Path(directory) / WEIGHTS), strict=True)
        return model.eval()


@dataclass(frozen=True)
class LocatorReport:
    val_error: float  # mean Euclidean error on the held-out frames, label units
    val_error_p90: float
    per_output_mae: tuple[float, ...]
    history: list[tuple[int, float, float]]  # (step, train loss, validation mean error)
    wall_time_s: float


def train_locator(cfg: LocatorConfig, images: np.ndarray, targets: np.ndarray, *,
                  steps: int = 4000, batch_size: int = 64, lr: float = 2e-3,
                  val_fraction: float = 0.05, seed: int = 0, eval_every: int = 500,
                  shift: int = 2, progress: bool = True
                  ) -> tuple[ObjectLocator, LocatorReport]:
    """Train a locator on prepared frames ``images`` (N, height, width, 3) uint8 and labels
    ``targets`` (N, K): L2 on standardised labels, AdamW, warm-up then cosine. Training frames
    are shifted by up to ``shift`` pixels (the label unchanged: a camera that moved a little).
    The first ``val_fraction`` of the frames is held out for the reported error."""
    images, targets = np.asarray(images), np.asarray(targets, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (cfg.height, cfg.width, 3) or (
            images.dtype != np.uint8):
        raise ValueError(f"images must be (N, {cfg.height}, {cfg.width}, 3) uint8 (prepared "
                         f"frames), got {images.shape} {images.dtype}")
    if targets.shape != (len(images), len(cfg.names)) or not np.isfinite(targets).all():
        raise ValueError(f"targets must be finite (N={len(images)}, K={len(cfg.names)}), got "
                         f"{targets.shape}")
    n_val = max(1, int(round(len(images) * val_fraction)))
    if len(images) - n_val < batch_size:
        raise ValueError(f"{len(images)} frames: too few for batch {batch_size} after holding "
                         f"out {n_val}")
    torch.manual_seed(seed)
    model = ObjectLocator(cfg)
    mean, std = targets.mean(0), targets.std(0) + 1e-6
    model.mean.copy_(torch.as_tensor(mean))
    model.std.copy_(torch.as_tensor(std))
    norm = torch.as_tensor((targets - mean) / std)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = min(200, steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(k / steps, 1.0))))
    rng = np.random.default_rng(seed)
    pad = ((0, 0), (shift, shift), (shift, shift), (0, 0))

    def batch_pixels(idx: np.ndarray) -> torch.Tensor:
        if not shift:
            return PromptProcessor.normalize(images[idx])
        padded = np.pad(images[idx], pad, mode="edge")
        dy, dx = rng.integers(0, 2 * shift + 1, (2, len(idx)))
        return PromptProcessor.normalize(np.stack([
            p[y:y + cfg.height, x:x + cfg.width] for p, y, x in zip(padded, dy, dx)]))

    def val_errors() -> np.ndarray:
        model.eval()
        pred = model.locate(images[:n_val], prepared=True)
        model.train()
        return pred - targets[:n_val]

    history: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="locator", disable=not progress, dynamic_ncols=True)
    model.train()
    for step in bar:
        idx = rng.integers(n_val, len(images), size=batch_size)
        loss = nn.functional.mse_loss(model(batch_pixels(idx)), norm[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            err = float(np.linalg.norm(val_errors(), axis=1).mean())
            history.append((step + 1, float(loss.detach()), err))
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val=f"{err:.4g}")
    diff = val_errors()
    dist = np.linalg.norm(diff, axis=1)
    model.eval()
    return model, LocatorReport(float(dist.mean()), float(np.percentile(dist, 90)),
                                tuple(float(x) for x in np.abs(diff).mean(0)), history,
                                time.perf_counter() - start)
