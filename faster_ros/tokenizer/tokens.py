"""The flat token order of FASTer action codes: the ONE place it is defined.

FASTerVLA predicts the code tensor C (N_c, C_h, C_a) as a flat sequence, "codebook by codebook,
horizon before dimension" (FASTer section 3.2, BAR): token n = c[q, t, a] with

    n = q * (C_h * C_a) + t * C_a + a

so all level-0 (coarse) codes come first, and within a level the C_a codes of horizon step 0
precede those of step 1. Token values are the code indices themselves, in [0, K).

Example, N_c = 2, C_h = 2, C_a = 2 (codes written as q t a)::

    tokens = [000, 001, 010, 011, 100, 101, 110, 111]
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import Tensor


def codes_to_tokens(codes: Tensor) -> Tensor:
    """codes (B, N_c, C_h, C_a) -> tokens (B, N_c * C_h * C_a) in policy order."""
    if codes.ndim != 4:
        raise ValueError(f"codes must be (B, N_c, C_h, C_a), got shape {tuple(codes.shape)}")
    return rearrange(codes, "b q t a -> b (q t a)")


def tokens_to_codes(tokens: Tensor, codebooks: int, code_horizon: int, code_dims: int) -> Tensor:
    """tokens (B, N_c * C_h * C_a) -> codes (B, N_c, C_h, C_a); inverse of codes_to_tokens."""
    expected = codebooks * code_horizon * code_dims
    if tokens.ndim != 2 or tokens.shape[1] != expected:
        raise ValueError(f"tokens must be (B, {expected}) = (B, N_c * C_h * C_a) for N_c="
                         f"{codebooks}, C_h={code_horizon}, C_a={code_dims}; got shape "
                         f"{tuple(tokens.shape)}")
    return rearrange(tokens, "b (q t a) -> b q t a", q=codebooks, t=code_horizon, a=code_dims)


def check_codes(codes: Tensor | np.ndarray, code_shape: tuple[int, int, int],
                codebook_size: int) -> Tensor:
    """codes (B, N_c, C_h, C_a) as a LongTensor, or ValueError naming the wrong shape, dtype or
    the out-of-range values (codes must be in [0, codebook_size))."""
    c = codes if isinstance(codes, Tensor) else torch.from_numpy(np.asarray(codes))
    if c.ndim != 4 or tuple(c.shape[1:]) != tuple(code_shape):
        want = ", ".join(map(str, code_shape))
        raise ValueError(f"codes must be (B, N_c, C_h, C_a) = (B, {want}), got shape "
                         f"{tuple(c.shape)}")
    if c.is_floating_point() or c.dtype == torch.bool:
        raise ValueError(f"codes must be integers, got {c.dtype}")
    c = c.long()
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= codebook_size):
        raise ValueError(f"codes out of range: must be in [0, {codebook_size}), got "
                         f"min {int(c.min())}, max {int(c.max())}")
    return c


def token_level(codebooks: int, code_horizon: int, code_dims: int) -> Tensor:
    """(N,) codebook level of each flat token position (for level-aware embeddings / masks)."""
    levels = torch.arange(codebooks).repeat_interleave(code_horizon * code_dims)
    return levels
