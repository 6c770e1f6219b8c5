"""FASTerVQ: the FASTer action tokenizer (arXiv 2512.04952, section 3.1) as one nn.Module.

    actions (B, H, D) physical units
      -> QuantileNormalizer -> Patchifier (B, m, n, h*d) -> TAAEEncoder z (B, C_h, C_a, d_lat)
      -> ResidualQuantizer codes (B, N_c, C_h, C_a) in [0, K)
      -> lookup z_q -> TAAEDecoder -> unpatchify -> denormalise -> actions (B, H, D)

Training: ``forward(actions) -> VQOutput`` with loss = L1 + L1 on the DCT (over time) +
beta * commitment (eq. 1). Inference: ``encode`` / ``decode`` are ``@torch.no_grad()``, run the
module in eval mode and are deterministic. Save / load: ``model.safetensors`` + ``config.json``.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from faster_ros.tokenizer import tokens as token_order
from faster_ros.tokenizer.configuration import VQConfig
from faster_ros.tokenizer.normalization import QuantileNormalizer
from faster_ros.tokenizer.patchify import Patchifier
from faster_ros.tokenizer.quantizer import ResidualQuantizer
from faster_ros.tokenizer.taae import TAAEDecoder, TAAEEncoder, pca_init

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class TokenizerLoadError(ValueError):
    """A saved tokenizer does not match its config, its embodiment or is not trained."""


@dataclass(frozen=True)
class VQOutput:
    """Result of a training forward pass. Losses are scalars; ``recon`` (B, H, D) is in
    normalised units; ``codes`` (B, N_c, C_h, C_a); ``clipped`` counts clipped input values."""

    loss: Tensor
    l1: Tensor
    dct_l1: Tensor
    commitment: Tensor
    recon: Tensor
    codes: Tensor
    clipped: int


@dataclass(frozen=True)
class EncodeResult:
    """Codes (B, N_c, C_h, C_a) and the number of input values clipped by the normaliser."""

    codes: Tensor
    clipped: int


def dct_matrix(n: int) -> Tensor:
    """Orthonormal DCT-II matrix (n, n): ``dct(x) = M @ x`` along time (scipy norm='ortho')."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    t = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * t + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.float()


class FASTerVQ(nn.Module):
    """FASTerVQ action tokenizer (FASTer, Liu et al. 2025): patchifier + TAAE + residual VQ."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.normalizer = QuantileNormalizer(config.action_dim, config.clip)
        self.patchifier = Patchifier(config.action_dim, config.time_patch, config.patch_groups)
        self.encoder = TAAEEncoder(config)
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.quantizer = ResidualQuantizer(config, world)
        self.decoder = TAAEDecoder(config)
        self.register_buffer("dct", dct_matrix(config.chunk_size), persistent=False)

    # ------------------------------------------------------------------ training

    def fit_normalizer(self, actions: np.ndarray | Tensor,
                       limits: tuple[np.ndarray, np.ndarray] | None = None) -> list[int]:
        """Per-dimension quantile bounds from training actions (N, D); dimensions constant in
        the data use ``limits`` (lower, upper) instead. Returns those dimensions."""
        cfg = self.config
        flat = self.normalizer.fit(actions, cfg.quantile_low, cfg.quantile_high, limits)
        return [int(i) for i in np.flatnonzero(flat)]

    @torch.no_grad()
    def init_linear_skip(self, actions: Tensor) -> dict[str, float]:
        """PCA-initialise the linear skip paths (``config.linear_skip``) from training chunks
        (B, H, D) physical; call after :meth:`fit_normalizer`, before :meth:`init_codebooks`."""
        if not self.config.linear_skip:
            return {}
        x = self.normalizer.normalize(self._check_actions(actions)).values
        w = self.loss_weights().reshape(1, 1, -1).expand(1, self.config.chunk_size, -1)
        w = self.patchifier.patchify(w)[0]  # (m, n, p), zero on padding
        w = torch.where(w > 0, w, torch.ones_like(w))
        return pca_init(self.encoder, self.decoder, self.patchifier.patchify(x), w)

    @torch.no_grad()
    def init_codebooks(self, actions: Tensor) -> None:
        """k-means initialise every codebook level from a large batch of training chunks
        (B, H, D) physical, before the first optimisation step (a training batch alone has
        fewer latent vectors than a 4096-entry codebook)."""
        was_training = self.training
        self.train()
        x = self.normalizer.normalize(self._check_actions(actions)).values
        self.quantizer(self.encoder(self.patchifier.patchify(x)))
        self.train(was_training)

    def loss_weights(self) -> Tensor:
        """(D,) per-dimension weights of the L1 terms: with ``physical_weighting`` the
        normalised error is weighted by the dimension's range, so the loss tracks the error in
        physical units (what VRR measures); otherwise all ones (plain normalised L1)."""
        if not self.config.physical_weighting:
            return torch.ones_like(self.normalizer.low)
        half = self.normalizer.half_range
        return half / half.mean()

    def forward(self, actions: Tensor) -> VQOutput:
        """actions (B, H, D) physical -> losses and reconstruction (eq. 1 of the paper)."""
        norm = self.normalizer.normalize(self._check_actions(actions))
        x = norm.values  # (B, H, D)
        z = self.encoder(self.patchifier.patchify(x))
        q = self.quantizer(z)
        recon = self.patchifier.unpatchify(self.decoder(q.quantized))  # (B, H, D)
        w = self.loss_weights()
        l1 = ((recon - x).abs() * w).mean()
        dct_l1 = ((torch.einsum("kt,btd->bkd", self.dct, recon - x)).abs() * w).mean()
        loss = l1 + self.config.dct_weight * dct_l1 + q.commitment
        return VQOutput(loss, l1.detach(), dct_l1.detach(), q.commitment.detach(),
                        recon.detach(), q.codes, norm.num_clipped)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def encode_with_info(self, actions: Tensor | np.ndarray) -> EncodeResult:
        """actions (B, H, D) physical -> EncodeResult(codes (B, N_c, C_h, C_a), clipped)."""
        if self.training:  # eval() walks every submodule: ~30 % of a one-chunk decode
            self.eval()
        norm = self.normalizer.normalize(self._check_actions(actions))
        z = self.encoder(self.patchifier.patchify(norm.values))
        return EncodeResult(self.quantizer(z).codes, norm.num_clipped)

    def encode(self, actions: Tensor | np.ndarray) -> Tensor:
        """actions (B, H, D) float, physical units -> codes LongTensor (B, N_c, C_h, C_a).

        Raises ValueError for a wrong shape / action width or NaN / inf values."""
        return self.encode_with_info(actions).codes

    @torch.no_grad()
    def decode(self, codes: Tensor | np.ndarray, levels: int | None = None) -> Tensor:
        """codes (B, N_c, C_h, C_a) in [0, K) -> actions (B, H, D) float32, physical units.

        ``levels=k`` decodes from the first k codebooks only (coarse to fine).
        Raises ValueError for a wrong shape, codes outside [0, K) or a bad ``levels``."""
        if self.training:
            self.eval()
        codes = self._check_codes(codes)
        if levels is not None and not (isinstance(levels, int) and
                                       1 <= levels <= self.config.codebooks):
            raise ValueError(f"levels must be an int in 1..{self.config.codebooks}, got "
                             f"{levels!r}")
        z = self.quantizer.lookup(codes, levels)
        x = self.patchifier.unpatchify(self.decoder(z))
        return self.normalizer.denormalize(x).float()

    def codes_to_tokens(self, codes: Tensor | np.ndarray) -> Tensor:
        """codes (B, N_c, C_h, C_a) -> tokens (B, N) in policy order (see tokens.py)."""
        return token_order.codes_to_tokens(self._check_codes(codes))

    def tokens_to_codes(self, tokens: Tensor | np.ndarray) -> Tensor:
        """tokens (B, N) -> codes (B, N_c, C_h, C_a); inverse of codes_to_tokens."""
        cfg = self.config
        tokens = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, Tensor) else tokens)
        codes = token_order.tokens_to_codes(tokens, cfg.codebooks, cfg.code_horizon,
                                            cfg.code_dims)
        return self._check_codes(codes)

    # ------------------------------------------------------------------ validation

    def _check_actions(self, actions: Tensor | np.ndarray) -> Tensor:
        cfg = self.config
        x = actions if isinstance(actions, Tensor) else torch.from_numpy(np.asarray(actions))
        if x.ndim != 3:
            raise ValueError(f"actions must be (B, H={cfg.chunk_size}, D={cfg.action_dim}), got "
                             f"shape {tuple(x.shape)}")
        if x.shape[2] != cfg.action_dim:
            raise ValueError(f"wrong action width: this tokenizer takes D={cfg.action_dim} "
                             f"action dimensions, got {x.shape[2]} (shape {tuple(x.shape)})")
        if x.shape[1] != cfg.chunk_size:
            raise ValueError(f"wrong chunk length: this tokenizer takes H={cfg.chunk_size} "
                             f"steps, got {x.shape[1]} (shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise ValueError(f"actions must be floating point, got {x.dtype}")
        x = x.to(device=self.normalizer.low.device, dtype=torch.float32)
        bad = ~torch.isfinite(x)
        if bad.any():
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(f"actions contain {int(bad.sum())} NaN/inf values (first at "
                             f"[batch, step, dim] = {list(first)})")
        return x

    def _check_codes(self, codes: Tensor | np.ndarray) -> Tensor:
        cfg = self.config
        c = token_order.check_codes(codes, cfg.code_shape, cfg.codebook_size)
        return c.to(device=self.normalizer.low.device)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into directory ``path``."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"format": "faster_ros.FASTerVQ/1"}
        meta.update({k: json.dumps(v) for k, v in (metadata or {}).items()})
        save_file(state, str(out / WEIGHTS_FILE), metadata=meta)
        self.config.save(out / CONFIG_FILE)
        return out

    @classmethod
    def load(cls, path: str | Path, embodiment: Any = None, map_location: str = "cpu"
             ) -> FASTerVQ:
        """Load a saved tokenizer directory (or a shipped model name under ``models/``).

        Checks the weights against the config (shapes, keys), that every codebook and the
        normaliser were initialised, and, with ``embodiment`` (an Embodiment or its name), that
        the tokenizer fits it (action width, chunk, code shape, patch groups). A checkpoint
        without the ``initted`` flags is marked initialised so k-means never re-runs on it."""
        from faster_ros.paths import model_path

        root = model_path(path)
        config = VQConfig.load(root / CONFIG_FILE)
        if embodiment is not None:
            check_embodiment(config, embodiment)
        model = cls(config)
        state = load_file(str(root / WEIGHTS_FILE), device=map_location)
        _guard_initted(model, state, root)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TokenizerLoadError(f"{root}: weights do not match config.json: missing "
                                     f"{missing[:5]}, unexpected {unexpected[:5]}")
        if not bool(model.normalizer.fitted):
            raise TokenizerLoadError(f"{root}: normalisation statistics were never fitted")
        return model.eval()


def _guard_initted(model: FASTerVQ, state: dict[str, Tensor], root: Path) -> None:
    """k-means re-runs on the first forward when ``initted`` is False: a checkpoint written
    without the flag (another exporter, a pruned state dict) would silently get new codebooks.
    Missing flags are set True; flags present and False mean the codebooks never trained."""
    for key in model.quantizer.initted_keys("quantizer."):
        if key not in state:
            warnings.warn(f"{root}: {key} missing; marking the codebook initialised (no k-means "
                          f"re-initialisation at the first forward)", stacklevel=3)
            state[key] = torch.tensor(True)
        elif not bool(state[key]):
            raise TokenizerLoadError(f"{root}: codebook {key} was never initialised "
                                     f"(untrained checkpoint)")


def check_embodiment(config: VQConfig, embodiment: Any) -> None:
    """Raise TokenizerLoadError if ``config`` does not fit ``embodiment`` (object or name)."""
    from faster_ros.embodiment import load_embodiment

    emb = load_embodiment(embodiment) if isinstance(embodiment, (str, Path)) else embodiment
    spec = emb.tokenizer
    expected = {
        "action_dim": emb.action_dim,
        "chunk_size": spec.chunk_size,
        "time_patch": spec.time_patch,
        "code_horizon": spec.code_horizon,
        "code_dims": spec.code_dims,
        "codebooks": spec.codebooks,
        "codebook_size": spec.codebook_size,
        "patch_groups": tuple(g.indices for g in spec.patch_groups),
    }
    for name, want in expected.items():
        got = getattr(config, name)
        if got != want:
            raise TokenizerLoadError(f"tokenizer does not fit embodiment {emb.name!r}: {name} is "
                                     f"{got!r} in the tokenizer, {want!r} in {emb.source}")
    if config.dim_names and tuple(config.dim_names) != tuple(emb.dim_names):
        diff = next(i for i, (a, b) in enumerate(zip(config.dim_names, emb.dim_names)) if a != b)
        raise TokenizerLoadError(f"tokenizer does not fit embodiment {emb.name!r}: dimension "
                                 f"{diff} is {config.dim_names[diff]!r} in the tokenizer, "
                                 f"{emb.dim_names[diff]!r} in {emb.source}")
