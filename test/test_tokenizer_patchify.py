"""FASTer action patchifier: exact inverse with non-uniform groups, pinned layout."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.tokenizer.patchify import Patchifier


def test_pinned_layout():
    # H = 4, h = 2, groups ((0, 2), (1,)) -> d = 2, patches (B, m=2, n=2, h*d=4)
    p = Patchifier(action_dim=3, time_patch=2, groups=((0, 2), (1,)))
    a = torch.arange(12.0).reshape(1, 4, 3)  # a[t, d] = 3 t + d
    patches = p.patchify(a)
    assert patches.shape == (1, 2, 2, 4)
    # patch (time 0, group 0): steps 0, 1 of dims (0, 2) -> [a00, a02, a10, a12]
    assert patches[0, 0, 0].tolist() == [0.0, 2.0, 3.0, 5.0]
    # patch (time 1, group 1): steps 2, 3 of dim 1, padded -> [a21, 0, a31, 0]
    assert patches[0, 1, 1].tolist() == [7.0, 0.0, 10.0, 0.0]
    assert torch.equal(p.unpatchify(patches), a)


@st.composite
def layouts(draw):
    dim = draw(st.integers(1, 9))
    perm = draw(st.permutations(list(range(dim))))
    cuts = sorted(draw(st.sets(st.integers(1, dim - 1), max_size=dim - 1))) if dim > 1 else []
    bounds = [0, *cuts, dim]
    groups = tuple(tuple(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    h = draw(st.integers(1, 4))
    m = draw(st.integers(1, 4))
    return dim, groups, h, m


@settings(max_examples=60, deadline=None)
@given(layouts(), st.integers(1, 3))
def test_unpatchify_is_exact_inverse(layout, batch):
    dim, groups, h, m = layout
    p = Patchifier(dim, h, groups)
    a = torch.randn(batch, h * m, dim)
    patches = p.patchify(a)
    assert patches.shape == (batch, m, len(groups), h * max(len(g) for g in groups))
    assert torch.equal(p.unpatchify(patches), a)
    # padding slots are exactly zero
    assert int((patches != 0).sum()) <= a.numel()
