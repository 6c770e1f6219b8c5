"""Seam blending: start at the current command, end on the new chunk."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.control import Chunk, blend_seam, blend_weights, smoothstep


def test_smoothstep_shape():
    s = np.linspace(-0.5, 1.5, 9)
    w = smoothstep(s)
    assert w[0] == 0 and w[-1] == 1
    assert np.all(np.diff(w) >= 0)
    eps = 1e-6
    assert smoothstep(eps) < 1e-10 and 1 - smoothstep(1 - eps) < 1e-10  # flat at both ends


@settings(max_examples=100, deadline=None)
@given(h=st.integers(2, 32), d=st.integers(1, 5), blend=st.floats(0.01, 1.0),
       seed=st.integers(0, 2**31 - 1))
def test_blend_starts_at_command_and_ends_on_chunk(h, d, blend, seed):
    rng = np.random.default_rng(seed)
    new = rng.normal(size=(h, d))
    old = rng.normal(size=(h, d))
    c = Chunk(new, start_time=5.0, dt=0.05)
    times = c.times()

    def commanded_at(t):
        return old[np.searchsorted(times, t - 1e-12)]

    b = blend_seam(c, commanded_at, blend)
    np.testing.assert_allclose(b.positions[0], old[0], atol=1e-12)
    after = times >= 5.0 + blend
    np.testing.assert_allclose(b.positions[after], new[after], atol=1e-12)
    w = blend_weights(times, 5.0, blend)[:, None]
    lo, hi = np.minimum(old, new), np.maximum(old, new)
    assert np.all(b.positions >= lo - 1e-12) and np.all(b.positions <= hi + 1e-12)
    np.testing.assert_allclose(b.positions, (1 - w) * old + w * new, atol=1e-12)
    assert b.times()[0] == c.start_time and b.dt == c.dt


def test_blend_passthrough_and_nan_propagates():
    c = Chunk(np.ones((4, 2)), start_time=0.0, dt=0.1)
    assert blend_seam(c, None, 0.2) is c
    assert blend_seam(c, lambda t: np.zeros((len(t), 2)), 0.0) is c
    bad = Chunk(np.full((4, 2), np.nan), start_time=0.0, dt=0.1)
    out = blend_seam(bad, lambda t: np.zeros((len(t), 2)), 0.2)
    assert np.isnan(out.positions).all()  # never hidden by a zero weight
    with pytest.raises(ValueError, match="shape"):
        blend_seam(c, lambda t: np.zeros((len(t), 3)), 0.2)


def test_catch_up_time_closes_an_offset_at_the_share_of_the_rate():
    from faster_ros.control.blending import SEAM_RATE_SHARE, catch_up_time

    rate = np.array([3.0, 6.0])
    assert catch_up_time(np.array([0.0, 0.0]), rate, 0.1) == 0.1  # the minimum
    assert catch_up_time(np.array([0.3, 0.3]), rate, 0.1) == pytest.approx(
        1.5 * 0.3 / (SEAM_RATE_SHARE * 3.0))  # the slower joint decides: 0.3 s
    assert catch_up_time(np.array([-0.3, np.nan]), rate, 0.1) == pytest.approx(0.3)
    assert catch_up_time(np.array([np.inf, np.nan]), rate, 0.1) == 0.1  # left for the gate
    for offset in (0.05, 0.2, 0.7):  # the blended catch-up never beats the share of the rate
        t = catch_up_time(np.array([offset]), rate[:1], 0.02)
        c = Chunk(np.full((200, 1), offset), start_time=0.0, dt=0.01)
        b = blend_seam(c, lambda times: np.zeros((len(times), 1)), t)
        assert np.abs(np.diff(b.positions[:, 0])).max() / 0.01 <= SEAM_RATE_SHARE * 3.0 + 1e-2
