"""The one attention-mask helper of FASTerVLA: the block-causal mask of BAR (FASTer Fig. 3c).

Every attention pattern of the policy comes from :func:`block_causal_mask`: training (teacher
forcing over the whole sequence), the KV-cached block decoder (it slices the rows of the block it
decodes) and token-wise autoregression (``block_size=1``, which is the ordinary causal mask).
"""

from __future__ import annotations

import torch


def num_blocks(num_tokens: int, block_size: int) -> int:
    """J = ceil(N / B): the number of blocks, i.e. of decoding passes, for N tokens."""
    if num_tokens <= 0 or block_size <= 0:
        raise ValueError(f"num_tokens and block_size must be positive, got {num_tokens}, "
                         f"{block_size}")
    return -(-num_tokens // block_size)


def block_causal_mask(
    prefix_len: int, num_tokens: int, block_size: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean attention mask (True = may attend) over ``prefix_len`` context slots followed by
    ``num_tokens`` action slots cut into blocks of ``block_size`` (the last one may be short).

    - context rows see the whole context (bidirectional prefix, as PaliGemma's prefix-LM) and no
      action slot;
    - an action slot in block j sees the context, every slot of blocks < j and every slot of its
      own block j (intra-block attention), never a later block.

    With ``block_size=1`` the action part is the ordinary causal mask (token-wise AR). Returns a
    (prefix_len + num_tokens, prefix_len + num_tokens) bool tensor; rows are queries, columns keys.
    A KV-cached decoder takes the rows of one block and the columns up to the end of that block.

    >>> block_causal_mask(prefix_len=2, num_tokens=5, block_size=2).long()
    tensor([[1, 1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 1]])
    """
    if prefix_len < 0:
        raise ValueError(f"prefix_len must be >= 0, got {prefix_len}")
    num_blocks(num_tokens, block_size)  # validates
    total = prefix_len + num_tokens
    # block id per slot: -1 for the context, i // B for action slot i
    block = torch.full((total,), -1, dtype=torch.long, device=device)
    block[prefix_len:] = torch.arange(num_tokens, device=device) // block_size
    is_action_query = block[:, None] >= 0
    # an action query sees keys of blocks <= its own (the context has block -1)
    action_rows = block[None, :] <= block[:, None]
    # a context query sees the context only
    context_rows = block[None, :] < 0
    return torch.where(is_action_query, action_rows, context_rows)
