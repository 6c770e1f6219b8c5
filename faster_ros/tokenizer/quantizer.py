"""Residual VQ of the FASTerVQ latent (FASTer section 3.1), on vector-quantize-pytorch.

N_c levels quantise the residual of the previous ones (r_1 = z, r_{i+1} = r_i - Q_i(r_i)),
codebooks of K entries are updated by EMA with k-means initialisation and dead-code
re-initialisation (a code is dead when its EMA usage per step falls below ``dead_code_fraction``
of the uniform share, batch * latent positions * world size / K: an absolute threshold such as
the library's 2 would declare every code dead when a batch has fewer vectors than 2 K, and the
codebook would be re-sampled from the batch at every step), gradients pass by the
straight-through estimator (not the library's default rotation trick), and the commitment loss is
beta * ||r_i - sg(Q_i(r_i))||^2 summed over levels.

Decoding from indices is a plain embedding lookup summed over the first ``levels`` codebooks
(coarse to fine), faster than the library's einx path and valid for any prefix of levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import ResidualVQ

from faster_ros.tokenizer.configuration import VQConfig


@dataclass(frozen=True)
class QuantizerOutput:
    """z_q (B, C_h, C_a, latent_dim) with STE gradients, codes (B, N_c, C_h, C_a), and the
    commitment loss (scalar, already multiplied by beta)."""

    quantized: Tensor
    codes: Tensor
    commitment: Tensor


class ResidualQuantizer(nn.Module):
    """Residual vector quantiser (Zeghidour et al. 2021, SoundStream) as used by FASTerVQ."""

    def __init__(self, cfg: VQConfig, world_size: int = 1):
        super().__init__()
        self.codebooks = cfg.codebooks
        per_step = cfg.batch_size * world_size * cfg.code_horizon * cfg.code_dims
        threshold = cfg.dead_code_fraction * per_step / cfg.codebook_size
        self.codebook_size = cfg.codebook_size
        self.rvq = ResidualVQ(
            dim=cfg.latent_dim,
            num_quantizers=cfg.codebooks,
            codebook_size=cfg.codebook_size,
            codebook_dim=cfg.codebook_dim or None,
            decay=cfg.ema_decay,
            commitment_weight=cfg.commitment_weight,
            kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=threshold,
            rotation_trick=False,  # plain straight-through estimator, as in the paper
            straight_through=False,
            stochastic_sample_codes=False,
        )

    def forward(self, z: Tensor) -> QuantizerOutput:
        """z (B, C_h, C_a, latent_dim) -> quantised latent, codes and commitment loss."""
        b, t, a, _ = z.shape
        flat = rearrange(z, "b t a d -> b (t a) d")
        quantized, indices, losses = self.rvq(flat)  # (B, N, d), (B, N, N_c), (N_c,)
        return QuantizerOutput(
            quantized=rearrange(quantized, "b (t a) d -> b t a d", t=t),
            codes=rearrange(indices, "b (t a) q -> b q t a", t=t),
            commitment=losses.sum(),
        )

    def embeddings(self) -> list[Tensor]:
        """The N_c codebooks, each (K, latent_dim)."""
        return [layer._codebook.embed[0] for layer in self.rvq.layers]

    def lookup(self, codes: Tensor, levels: int | None = None) -> Tensor:
        """codes (B, N_c, C_h, C_a) -> z_q (B, C_h, C_a, latent_dim), summed over the first
        ``levels`` codebooks (all when None). Codes must already be validated."""
        levels = self.codebooks if levels is None else levels
        books = self.embeddings()
        z = books[0][codes[:, 0]]
        for q in range(1, levels):
            z = z + books[q][codes[:, q]]
        return self.rvq.project_out(z)

    def initialised(self) -> list[bool]:
        """Per level: has the codebook been (k-means) initialised?"""
        return [bool(layer._codebook.initted) for layer in self.rvq.layers]

    def initted_keys(self, prefix: str = "") -> list[str]:
        """state_dict keys of the ``initted`` flags (the k-means guard at load)."""
        return [f"{prefix}rvq.layers.{i}._codebook.initted" for i in range(self.codebooks)]

    @torch.no_grad()
    def usage(self, codes: Tensor) -> Tensor:
        """(N_c, K) counts of each code per level in codes (B, N_c, C_h, C_a)."""
        flat = rearrange(codes, "b q t a -> q (b t a)")
        return torch.stack([torch.bincount(c, minlength=self.codebook_size) for c in flat])
