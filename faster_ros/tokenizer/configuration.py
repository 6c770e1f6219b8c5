"""The frozen, validated configuration of one FASTerVQ action tokenizer (FASTer, section 3.1).

A :class:`VQConfig` fixes everything a trained tokenizer depends on: the chunk shape (H x D), the
patch groups (non-uniform dimension groups, FASTer's action patchifier), the latent code shape
(C_h x C_a x latent_dim), the residual quantizer (N_c levels of K codes), the TAAE widths and the
training recipe. ``VQConfig.from_embodiment(emb)`` builds it from ``config/<robot>.yaml``; it is
saved as ``config.json`` next to the weights and checked against the embodiment at load.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # A few thousand parameters: unit tests only.
    "debug": dict(width=16, heads=2, enc_layers=1, dec_layers=1, latent_dim=8, codebook_size=16,
                  ff_mult=2, steps=20, warmup_steps=2, batch_size=16, kmeans_iters=2),
    # ~1-2M parameters: trains on a laptop CPU in minutes, decodes a chunk in ~1 ms (the recipe
    # of the policy's bundled tokenizer, models/g1_inspire_vla, with --set width=64).
    "small": dict(width=128, heads=4, enc_layers=2, dec_layers=2, latent_dim=128),
    # ~0.6-0.8M parameters, the recipe of the shipped models/*_vq tokenizers on a shared CPU:
    # 8-dim latent lookups and PCA-initialised linear skip paths (chosen on validation
    # episodes, see models/g1_inspire_vq/README.md). from_embodiment keeps the embodiment's K
    # and latent_dim, so the shipped models were trained with --set latent_dim=8. clip 4: robot
    # positions drift beyond the training range between sessions (G1 held-out episodes reach
    # 2.1 x the half-range) and the linear skip path extrapolates, where clipping at 1.5 cannot.
    "cpu": dict(width=64, heads=4, enc_layers=2, dec_layers=2, latent_dim=8,
                codebook_size=4096, linear_skip=True, kmeans_iters=20, lr=3e-4,
                warmup_steps=200, steps=2000, batch_size=128, clip=4.0),
    # Paper scale (A.2): K 4096, lr 1e-4, 1000 warm-up steps, GPU training.
    "paper": dict(width=256, heads=8, enc_layers=4, dec_layers=4, latent_dim=128,
                  codebook_size=4096, lr=1e-4, warmup_steps=1000, steps=300_000, batch_size=512),
}


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"VQConfig.{name} must be a positive int, got {value!r}")


def _finite(name: str, value: Any, low: float = -math.inf, low_open: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or not math.isfinite(value) or value < low or (low_open and value == low):
        op = ">" if low_open else ">="
        raise ValueError(f"VQConfig.{name} must be a finite number {op} {low}, got {value!r}")


@dataclass(frozen=True)
class VQConfig:
    """FASTerVQ hyper-parameters, grouped Architecture / Quantizer / Normalisation / Training.

    Shapes: a chunk is (chunk_size H, action_dim D); the patchifier cuts time into
    m = H / time_patch groups of h = time_patch steps and the dimensions into the n
    ``patch_groups`` (index tuples, padded to the widest, d); the encoder maps the m x n patches to
    a latent (code_horizon C_h, code_dims C_a, latent_dim); the residual VQ gives codes
    (codebooks N_c, C_h, C_a) in [0, codebook_size K).
    """

    # --- Architecture
    action_dim: int
    chunk_size: int
    patch_groups: tuple[tuple[int, ...], ...]
    time_patch: int = 4
    code_horizon: int = 2
    code_dims: int = 7
    latent_dim: int = 128
    width: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    ff_mult: int = 4
    conv_kernel: int = 3
    linear_skip: bool = False  # PCA-initialised linear encoder/decoder paths beside the TAAE
    group_names: tuple[str, ...] = ()
    dim_names: tuple[str, ...] = ()
    embodiment: str = ""
    # --- Quantizer (residual VQ, EMA codebooks with dead-code re-initialisation)
    codebooks: int = 3
    codebook_size: int = 1024
    codebook_dim: int = 0  # 0: codebooks live in the latent (latent_dim); else a projection
    commitment_weight: float = 0.25
    ema_decay: float = 0.99
    dead_code_fraction: float = 0.1  # dead: EMA usage < fraction * uniform usage per step
    kmeans_init: bool = True
    kmeans_iters: int = 10
    # --- Normalisation (per-dimension quantile bounds mapped to [-1, 1], then clipped)
    quantile_low: float = 0.01
    quantile_high: float = 0.99
    clip: float = 1.5
    # --- Training (AdamW + cosine with warm-up; paper A.2 uses lr 1e-4, 1000 warm-up steps)
    lr: float = 1e-3
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 300
    steps: int = 6000
    batch_size: int = 256
    grad_clip: float = 1.0
    dct_weight: float = 1.0
    physical_weighting: bool = True
    stride: int = 1
    heldout_fraction: float = 0.1
    seed: int = 0
    # --- Provenance (not hyper-parameters): data specs and the train / held-out episode split
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "patch_groups", tuple(tuple(int(i) for i in g) for g in self.patch_groups))
        set_(self, "group_names", tuple(str(n) for n in self.group_names))
        set_(self, "dim_names", tuple(str(n) for n in self.dim_names))
        set_(self, "betas", tuple(float(b) for b in self.betas))
        for name in ("action_dim", "chunk_size", "time_patch", "code_horizon", "code_dims",
                     "latent_dim", "width", "heads", "enc_layers", "dec_layers", "ff_mult",
                     "conv_kernel", "codebooks", "codebook_size", "kmeans_iters", "steps",
                     "batch_size", "stride"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.codebook_dim, bool) or not isinstance(self.codebook_dim, int) \
                or self.codebook_dim < 0:
            raise ValueError(f"VQConfig.codebook_dim must be an int >= 0, got "
                             f"{self.codebook_dim!r}")
        if self.chunk_size % self.time_patch:
            raise ValueError(f"VQConfig.time_patch {self.time_patch} does not divide "
                             f"chunk_size {self.chunk_size}")
        if self.num_time_patches % self.code_horizon:
            raise ValueError(f"VQConfig.code_horizon {self.code_horizon} must divide the "
                             f"{self.num_time_patches} time patches (chunk_size / time_patch)")
        if self.width % self.heads:
            raise ValueError(f"VQConfig.heads {self.heads} does not divide width {self.width}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"VQConfig.conv_kernel must be odd, got {self.conv_kernel}")
        self._check_groups()
        for name in ("commitment_weight", "dct_weight", "weight_decay", "min_lr_ratio"):
            _finite(name, getattr(self, name), 0.0)
        for name in ("lr", "grad_clip", "clip", "dead_code_fraction"):
            _finite(name, getattr(self, name), 0.0, low_open=True)
        _finite("warmup_steps", self.warmup_steps, 0.0)
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"VQConfig.ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if not 0.0 <= self.quantile_low < self.quantile_high <= 1.0:
            raise ValueError(f"VQConfig.quantile_low/quantile_high must satisfy 0 <= low < high "
                             f"<= 1, got {self.quantile_low!r}, {self.quantile_high!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"VQConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"VQConfig.heldout_fraction must be in [0, 1), got "
                             f"{self.heldout_fraction!r}")

    def _check_groups(self) -> None:
        if not self.patch_groups or any(len(g) == 0 for g in self.patch_groups):
            raise ValueError(f"VQConfig.patch_groups must be non-empty groups, got "
                             f"{self.patch_groups!r}")
        flat = sorted(i for g in self.patch_groups for i in g)
        if flat != list(range(self.action_dim)):
            raise ValueError(f"VQConfig.patch_groups must partition 0..{self.action_dim - 1} "
                             f"(each dimension exactly once), got {self.patch_groups!r}")
        if self.group_names and len(self.group_names) != len(self.patch_groups):
            raise ValueError(f"VQConfig.group_names has {len(self.group_names)} names for "
                             f"{len(self.patch_groups)} patch_groups: {self.group_names!r}")
        if self.dim_names and len(self.dim_names) != self.action_dim:
            raise ValueError(f"VQConfig.dim_names has {len(self.dim_names)} names for "
                             f"action_dim {self.action_dim}")

    # ------------------------------------------------------------------ derived shapes

    @property
    def num_time_patches(self) -> int:
        """m: time groups of ``time_patch`` steps."""
        return self.chunk_size // self.time_patch

    @property
    def num_groups(self) -> int:
        """n: dimension groups."""
        return len(self.patch_groups)

    @property
    def group_width(self) -> int:
        """d: the widest group; narrower groups are zero-padded to it."""
        return max(len(g) for g in self.patch_groups)

    @property
    def patch_size(self) -> int:
        """h * d: values in one patch."""
        return self.time_patch * self.group_width

    @property
    def tokens_per_chunk(self) -> int:
        """N = N_c * C_h * C_a."""
        return self.codebooks * self.code_horizon * self.code_dims

    @property
    def values_per_token(self) -> float:
        """Action values per token, H * D / N."""
        return self.chunk_size * self.action_dim / self.tokens_per_chunk

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """(N_c, C_h, C_a)."""
        return (self.codebooks, self.code_horizon, self.code_dims)

    # ------------------------------------------------------------------ construction / IO

    @classmethod
    def from_embodiment(cls, emb: Any, preset: str = "small", **overrides: Any) -> VQConfig:
        """Shape fields from ``emb.tokenizer`` and ``emb.dimensions``, the rest from ``preset``.

        The embodiment's codebook_size and latent_dim win over the preset's unless overridden.
        """
        spec = emb.tokenizer
        fields = dict(preset_fields(preset))
        fields.update(
            action_dim=emb.action_dim,
            chunk_size=spec.chunk_size,
            time_patch=spec.time_patch,
            code_horizon=spec.code_horizon,
            code_dims=spec.code_dims,
            codebooks=spec.codebooks,
            patch_groups=tuple(g.indices for g in spec.patch_groups),
            group_names=tuple(g.name for g in spec.patch_groups),
            dim_names=tuple(emb.dim_names),
            embodiment=emb.name,
        )
        if preset != "debug":  # the embodiment's K and latent size win over the preset's
            fields.update(codebook_size=spec.codebook_size, latent_dim=spec.latent_dim)
        fields.update(overrides)
        return cls(**fields)

    def replace(self, **changes: Any) -> VQConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch_groups"] = [list(g) for g in self.patch_groups]
        d["group_names"] = list(self.group_names)
        d["dim_names"] = list(self.dim_names)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VQConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"VQConfig: unknown field {unknown[0]!r} in saved config")
        data = dict(data)
        data["patch_groups"] = tuple(tuple(g) for g in data["patch_groups"])
        for key in ("group_names", "dim_names", "betas"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> VQConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


def preset_fields(name: str) -> dict[str, Any]:
    """The field overrides of a named preset (``debug``, ``small``, ``paper``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown VQConfig preset {name!r} (known: {', '.join(PRESETS)})")
    return dict(PRESETS[name])
