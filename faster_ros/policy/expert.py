"""The lightweight action expert of FASTerVLA (FASTer section 3.2, after pi0's action expert).

"Same architecture as the backbone, fewer parameters": the expert is a decoder-only transformer
of the backbone LM's family - pre-norm blocks with RMSNorm, rotary position embeddings (RoPE),
grouped-query attention and a gated MLP (GeGLU-tanh for Gemma/PaliGemma, SwiGLU for Llama/SmolVLM)
- with its own, smaller width and depth. It is written here rather than taken from
``transformers`` because BAR needs three things the stock decoders do not expose together: an
arbitrary boolean attention mask (block-causal), arbitrary (jittered) RoPE positions, and a KV
cache extended one block at a time.

How it reads the backbone: the backbone's last hidden states over the context (images,
instruction, state) are projected to the expert width and form the expert's prefix. The prefix
KV is computed once per observation (one pass), then every block of action tokens attends to it
through the cache. Action tokens enter through the backbone's own, resized embedding table
(projected to the expert width) and leave through a head over the |C| action slots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faster_ros.policy.configuration import FASTerVLAConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate (B, H, L, hd) queries/keys by (B, L) positions (integers, possibly spaced)."""
    half = x.shape[-1] // 2
    freqs = theta ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.float()[:, None, :, None] * freqs  # (B, 1, L, hd / 2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class KVCache:
    """Per-layer keys / values (B, H_kv, L, hd), extended one pass (context, then a block) at a
    time. ``length`` is the number of cached slots."""

    def __init__(self, num_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class ExpertLayer(nn.Module):
    """One pre-norm decoder block: GQA self-attention with RoPE, then a gated MLP."""

    def __init__(self, cfg: FASTerVLAConfig, activation: str):
        super().__init__()
        d, h, kv, hd = cfg.expert_width, cfg.expert_heads, cfg.expert_kv_heads, cfg.expert_head_dim
        self.heads, self.kv_heads, self.head_dim, self.theta = h, kv, hd, cfg.rope_theta
        self.attn_norm = RMSNorm(d)
        self.q = nn.Linear(d, h * hd, bias=False)
        self.k = nn.Linear(d, kv * hd, bias=False)
        self.v = nn.Linear(d, kv * hd, bias=False)
        self.o = nn.Linear(h * hd, d, bias=False)
        self.mlp_norm = RMSNorm(d)
        self.gate = nn.Linear(d, cfg.expert_mlp, bias=False)
        self.up = nn.Linear(d, cfg.expert_mlp, bias=False)
        self.down = nn.Linear(cfg.expert_mlp, d, bias=False)
        self.act = (lambda x: F.gelu(x, approximate="tanh")) if activation == "gelu" else F.silu

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                cache: KVCache | None, index: int) -> torch.Tensor:
        """x (B, L, D), positions (B, L), mask (B, 1, L, L_cached + L) bool -> (B, L, D)."""
        b, n, _ = x.shape
        y = self.attn_norm(x)
        q = self.q(y).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)
        k = self.k(y).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(y).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, positions, self.theta), apply_rope(k, positions, self.theta)
        if cache is not None:
            k, v = cache.extend(index, k, v)  # (B, H_kv, L_cached + L, hd)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.o(att.transpose(1, 2).reshape(b, n, -1))
        y = self.mlp_norm(x)
        return x + self.down(self.act(self.gate(y)) * self.up(y))


class ActionExpert(nn.Module):
    """Decoder over [projected backbone context; action-token slots] -> action-vocabulary logits.

    ``context_width``: the backbone's hidden size; ``embed_width``: its embedding width."""

    def __init__(self, cfg: FASTerVLAConfig, context_width: int, embed_width: int,
                 activation: str = "gelu"):
        super().__init__()
        self.cfg = cfg
        self.context_proj = nn.Linear(context_width, cfg.expert_width)
        self.token_proj = nn.Linear(embed_width, cfg.expert_width)
        self.layers = nn.ModuleList(ExpertLayer(cfg, activation)
                                    for _ in range(cfg.expert_layers))
        self.norm = RMSNorm(cfg.expert_width)
        self.head = nn.Linear(cfg.expert_width, cfg.action_vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.layers))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        """Expert-width inputs x (B, L, E) at positions (B, L), bool mask (B, 1, L, K) with
        K = cached slots + L -> final-norm hidden states (B, L, E); ``cache`` is extended."""
        for i, layer in enumerate(self.layers):
            x = layer(x, positions, mask, cache, i)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, E) -> (B, L, |C|) logits over the action vocabulary (float32)."""
        return self.head(hidden).float()
