"""The block-causal mask helper and the spacing-augmented RoPE positions."""

import doctest

import pytest
import torch

from faster_ros.policy import masks
from faster_ros.policy.decoding import action_positions, block_inputs
from faster_ros.policy.masks import block_causal_mask, num_blocks


def test_docstring_example_runs():
    result = doctest.testmod(masks, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


@pytest.mark.parametrize("prefix,n,b", [(0, 7, 7), (3, 21, 7), (5, 126, 7), (4, 78, 13),
                                        (2, 10, 3), (1, 6, 1)])
def test_mask_structure(prefix, n, b):
    m = block_causal_mask(prefix, n, b)
    assert m.shape == (prefix + n, prefix + n) and m.dtype == torch.bool
    assert m[:prefix, :prefix].all() and not m[:prefix, prefix:].any()
    assert m[prefix:, :prefix].all()
    for i in range(n):
        for k in range(n):
            assert bool(m[prefix + i, prefix + k]) == (k // b <= i // b)


def test_block_size_one_is_causal():
    m = block_causal_mask(0, 9, 1)
    assert torch.equal(m, torch.ones(9, 9, dtype=torch.bool).tril())


@pytest.mark.parametrize("n,b,j", [(21, 7, 3), (126, 7, 18), (78, 13, 6), (10, 3, 4), (5, 1, 5)])
def test_num_blocks_is_ceil(n, b, j):
    assert num_blocks(n, b) == j


def test_block_inputs_shift_one_block():
    tokens = torch.arange(1, 8)[None]
    assert block_inputs(tokens, 3, 99).tolist() == [[99, 99, 99, 1, 2, 3, 4]]
    assert block_inputs(tokens, 1, 99).tolist() == [[99, 1, 2, 3, 4, 5, 6]]


def test_spacing_augmentation_positions():
    start = torch.tensor([5, 9])
    g = torch.Generator().manual_seed(0)
    pos = action_positions(start, 200, jitter=2, generator=g)
    steps = pos.diff(dim=1)
    assert (pos[:, 0] == start).all()
    assert steps.min() >= 1 and steps.max() <= 3  # 1 + U{0..2}, strictly increasing
    assert len(steps.unique()) == 3
    fixed = action_positions(start, 6, spacing=2)
    assert fixed.tolist() == [[5, 7, 9, 11, 13, 15], [9, 11, 13, 15, 17, 19]]
