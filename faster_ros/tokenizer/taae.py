"""TAAE: FASTer's Transformer Action AutoEncoder (section 3.1), encoder and decoder.

Convolutions model local structure and downsample time; transformer layers give the global
receptive field. The encoder maps patches (B, m, n, h*d) to a latent (B, C_h, C_a, latent_dim);
the decoder mirrors it. Time is downsampled m -> C_h by a strided convolution; the n dimension
groups are mapped to the C_a latent slots by a learned linear token mixing (FASTer gives C_a = DoF
per embodiment, Table 4, so the latent is laid out as C_h x C_a whatever n is).

Encoder (per chunk)::

    patches (m, n, h*d) -> Linear -> +group/time embeddings -> Transformer over the m*n tokens
      -> per-group Conv1d over time (local) -> strided Conv1d m -> C_h
      -> token mixing n -> C_a -> Transformer over the C_h*C_a tokens -> Linear -> latent

Decoder: latent -> Linear -> Transformer (C_h*C_a) -> mixing C_a -> n -> ConvTranspose1d
C_h -> m -> Conv1d -> Transformer (m*n) -> Linear -> patches.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from faster_ros.tokenizer.configuration import VQConfig


def _transformer(cfg: VQConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=cfg.width, nhead=cfg.heads, dim_feedforward=cfg.ff_mult * cfg.width,
        dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class ConvBlock(nn.Module):
    """Residual Conv1d over time, shared by all groups: x (B*n, W, T) -> same shape."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, width)
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.act(self.norm(x)))


class TokenMix(nn.Module):
    """Linear map across the token axis of one latent row: (B, T, n_in, W) -> (B, T, n_out, W)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("oi,btiw->btow", self.weight, x)


class TAAEEncoder(nn.Module):
    """FASTer TAAE encoder: patches (B, m, n, h*d) -> latent z (B, C_h, C_a, latent_dim)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        m, n, w = cfg.num_time_patches, cfg.num_groups, cfg.width
        self.n = n
        self.embed = nn.Linear(cfg.patch_size, w)
        self.pos = nn.Parameter(torch.zeros(1, m, n, w))
        self.global_in = _transformer(cfg, cfg.enc_layers)
        self.local = ConvBlock(w, cfg.conv_kernel)
        stride = m // cfg.code_horizon
        self.down = nn.Conv1d(w, w, kernel_size=stride, stride=stride)
        self.mix = TokenMix(n, cfg.code_dims)
        self.latent_pos = nn.Parameter(torch.zeros(1, cfg.code_horizon, cfg.code_dims, w))
        self.global_out = _transformer(cfg, max(1, cfg.enc_layers // 2))
        self.norm = nn.LayerNorm(w)
        self.proj = nn.Linear(w, cfg.latent_dim)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.latent_pos, std=0.02)

    def forward(self, patches: Tensor) -> Tensor:
        b, m, n, _ = patches.shape
        x = self.embed(patches) + self.pos  # (B, m, n, W)
        x = self.global_in(rearrange(x, "b m n w -> b (m n) w"))
        x = rearrange(x, "b (m n) w -> (b n) w m", n=n)
        x = self.down(self.local(x))  # (B*n, W, C_h)
        x = rearrange(x, "(b n) w t -> b t n w", n=n)
        x = self.mix(x) + self.latent_pos  # (B, C_h, C_a, W)
        t, a = x.shape[1], x.shape[2]
        x = self.global_out(rearrange(x, "b t a w -> b (t a) w"))
        z = self.proj(self.norm(x))
        return rearrange(z, "b (t a) d -> b t a d", t=t, a=a)


class TAAEDecoder(nn.Module):
    """FASTer TAAE decoder: latent z_q (B, C_h, C_a, latent_dim) -> patches (B, m, n, h*d)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        m, n, w = cfg.num_time_patches, cfg.num_groups, cfg.width
        self.n, self.m = n, m
        self.proj = nn.Linear(cfg.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.zeros(1, cfg.code_horizon, cfg.code_dims, w))
        self.global_in = _transformer(cfg, max(1, cfg.dec_layers // 2))
        self.mix = TokenMix(cfg.code_dims, n)
        stride = m // cfg.code_horizon
        self.up = nn.ConvTranspose1d(w, w, kernel_size=stride, stride=stride)
        self.local = ConvBlock(w, cfg.conv_kernel)
        self.pos = nn.Parameter(torch.zeros(1, m, n, w))
        self.global_out = _transformer(cfg, cfg.dec_layers)
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.patch_size)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.latent_pos, std=0.02)

    def forward(self, z: Tensor) -> Tensor:
        b, t, a, _ = z.shape
        x = self.proj(z) + self.latent_pos  # (B, C_h, C_a, W)
        x = self.global_in(rearrange(x, "b t a w -> b (t a) w"))
        x = self.mix(rearrange(x, "b (t a) w -> b t a w", t=t))  # (B, C_h, n, W)
        x = rearrange(x, "b t n w -> (b n) w t")
        x = self.local(self.up(x))  # (B*n, W, m)
        x = rearrange(x, "(b n) w m -> b m n w", n=self.n) + self.pos
        x = self.global_out(rearrange(x, "b m n w -> b (m n) w"))
        x = self.head(self.norm(x))
        return rearrange(x, "b (m n) p -> b m n p", m=self.m)
