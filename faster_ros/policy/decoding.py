"""Block-wise autoregressive decoding (BAR, FASTer section 3.2) with a KV cache.

Sequence after the context: N action slots in J = ceil(N / B) blocks. Slot i predicts action
token c_i. Its *input* is <BoBlk> for every slot of the first block (<BoBlk> replicated B times)
and, for slot i of block j > 0, token c_{(j-1)B + i} of the previous block: the shift-by-one-block
of teacher forcing (:func:`block_inputs`). Under the block-causal mask
(:func:`faster_ros.policy.masks.block_causal_mask`) slot (j, i) then sees exactly the context and
C_{<j}, i.e. it models p(c_{j,i} | C_{<j}, context) - the BAR loss. With B = 1 this is ordinary
next-token prediction, so token-wise AR is the ``block_size=1`` path of the same decoder.

Decoding order: the flat order of the tokenizer's ``codes_to_tokens`` (codebook by codebook,
horizon before dimension); this module never reorders.

Positions (RoPE): action slot i sits at ``start + offset_i``; in training offsets grow by
1 + eps, eps ~ U{0..k} (spacing augmentation), at inference by a fixed ``spacing`` (+2).

Invalid predictions: by default logits are constrained to the code slots (control tokens get
-inf); whatever is sampled is still checked, and an invalid token (a control token or a code
outside the tokenizer's range) is reported in ``DecodeResult.invalid`` - never dropped or clamped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from faster_ros.policy.expert import ActionExpert
from faster_ros.policy.masks import block_causal_mask, num_blocks


def action_positions(start: torch.Tensor, num_tokens: int, *, spacing: int | None = None,
                     jitter: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """RoPE positions (B, N) of the action slots after a context of ``start`` (B,) slots.

    Training (``spacing=None``): p_0 = start, p_i = p_{i-1} + 1 + eps_i, eps_i ~ U{0..jitter}.
    Inference (``spacing=s``): p_i = start + s * i.
    """
    b = start.shape[0]
    if spacing is not None:
        steps = torch.full((b, num_tokens), spacing, dtype=torch.long, device=start.device)
    else:
        eps = torch.randint(0, jitter + 1, (b, num_tokens), generator=generator,
                            device=start.device if generator is None else generator.device)
        steps = 1 + eps.to(start.device)
    steps[:, 0] = 0
    return start[:, None] + steps.cumsum(dim=1)


def block_inputs(tokens: torch.Tensor, block_size: int, bos_id: int) -> torch.Tensor:
    """Teacher-forcing inputs (B, N) for targets ``tokens`` (B, N): <BoBlk> x B, then the
    targets shifted right by one block."""
    bos = torch.full_like(tokens[:, :block_size], bos_id)
    return torch.cat([bos, tokens[:, : tokens.shape[1] - block_size]], dim=1)


def sample_tokens(logits: torch.Tensor, *, greedy: bool, top_k: int, temperature: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(..., V) logits -> (...) ids: argmax, or top-k sampling at ``temperature``."""
    if greedy:
        return logits.argmax(dim=-1)
    k = min(top_k, logits.shape[-1])
    values, indices = torch.topk(logits / temperature, k, dim=-1)
    probs = torch.softmax(values, dim=-1)
    flat = probs.reshape(-1, k)
    pick = torch.multinomial(flat, 1, generator=generator)  # generator on logits' device
    return indices.gather(-1, pick.view(*probs.shape[:-1], 1)).squeeze(-1)


def constrain_to_codes(logits: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Logit masking: control-token slots (ids >= codebook_size) get -inf."""
    out = logits.clone()
    out[..., codebook_size:] = float("-inf")
    return out


def find_invalid(tokens: torch.Tensor, codebook_size: int, valid_codes: int | None = None,
                 start: int = 0) -> list[list[str]]:
    """Reasons, per batch row, why tokens (B, L) at slots start.. are not decodable codes.

    ``codebook_size`` K: ids K and K+1 are <BoBlk> / <EoBlk>; ``valid_codes`` (default K): the
    action tokenizer's own codebook size, codes at or above it are out of range."""
    limit = codebook_size if valid_codes is None else min(valid_codes, codebook_size)
    names = {codebook_size: "<BoBlk>", codebook_size + 1: "<EoBlk>"}
    reasons: list[list[str]] = []
    for row in tokens.tolist():
        bad = []
        for i, t in enumerate(row):
            if t in names:
                bad.append(f"slot {start + i}: control token {names[t]} where a code must be")
            elif not 0 <= t < limit:
                bad.append(f"slot {start + i}: code {t} out of range [0, {limit})")
        reasons.append(bad)
    return reasons


@dataclass
class DecodeResult:
    """tokens (B, N) action-vocabulary ids; logits (B, N, |C|) as sampled from; ``passes``
    expert forward passes over action slots (= J blocks); ``block_ms`` wall time per block;
    ``prefix_ms`` the expert's context pass; ``invalid`` reasons per batch row."""

    tokens: torch.Tensor
    logits: torch.Tensor
    passes: int
    block_ms: list[float] = field(default_factory=list)
    prefix_ms: float = 0.0
    invalid: list[list[str]] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BlockDecoder:
    """The KV-cached BAR decoder: one expert pass over the context, then one pass per block.

    ``embed_actions`` maps action-vocabulary ids (B, L) to expert-width inputs (B, L, E)."""

    def __init__(self, expert: ActionExpert,
                 embed_actions: Callable[[torch.Tensor], torch.Tensor]):
        self.expert = expert
        self.embed_actions = embed_actions

    @torch.no_grad()
    def decode(self, context: torch.Tensor, context_valid: torch.Tensor, num_tokens: int,
               block_size: int, *, spacing: int, greedy: bool, top_k: int = 50,
               temperature: float = 1.0, mask_invalid: bool = True,
               valid_codes: int | None = None,
               generator: torch.Generator | None = None) -> DecodeResult:
        """Decode N = ``num_tokens`` action tokens after the expert-width ``context`` (B, P, E)
        whose valid slots are ``context_valid`` (B, P) bool."""
        cfg = self.expert.cfg
        b, p, _ = context.shape
        device = context.device
        full = block_causal_mask(p, num_tokens, block_size, device=device)  # (P + N, P + N)
        keys_valid = torch.cat([context_valid, context_valid.new_ones(b, num_tokens)], dim=1)
        ctx_pos = (context_valid.long().cumsum(-1) - 1).clamp(min=0)
        positions = action_positions(context_valid.sum(-1), num_tokens, spacing=spacing)

        cache = self.expert.new_cache()
        _sync(device)
        t0 = time.perf_counter()
        mask = full[None, None, :p, :p] & keys_valid[:, None, None, :p]
        self.expert(context, ctx_pos, mask, cache)
        _sync(device)
        prefix_ms = (time.perf_counter() - t0) * 1e3

        tokens = torch.empty(b, num_tokens, dtype=torch.long, device=device)
        logits_out = torch.empty(b, num_tokens, cfg.action_vocab_size, device=device)
        block_ms: list[float] = []
        for j in range(num_blocks(num_tokens, block_size)):
            t0 = time.perf_counter()
            lo, hi = j * block_size, min((j + 1) * block_size, num_tokens)
            if j == 0:
                inputs = torch.full((b, hi - lo), cfg.bos_block_id, device=device)
            else:
                inputs = tokens[:, lo - block_size: hi - block_size]
            rows = slice(p + lo, p + hi)
            mask = full[None, None, rows, : p + hi] & keys_valid[:, None, None, : p + hi]
            hidden = self.expert(self.embed_actions(inputs), positions[:, lo:hi], mask, cache)
            logits = self.expert.logits(hidden)  # (B, b_j, |C|)
            logits_out[:, lo:hi] = logits
            if mask_invalid:
                logits = constrain_to_codes(logits, cfg.codebook_size)
            tokens[:, lo:hi] = sample_tokens(logits, greedy=greedy, top_k=top_k,
                                             temperature=temperature, generator=generator)
            _sync(device)
            block_ms.append((time.perf_counter() - t0) * 1e3)
        invalid = find_invalid(tokens, cfg.codebook_size, valid_codes)
        return DecodeResult(tokens, logits_out, len(block_ms), block_ms, prefix_ms, invalid)
