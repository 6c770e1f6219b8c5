"""Chunk timing: anchoring (latency compensation) and time scaling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.control import Chunk, anchor, delay_steps, late_steps, time_scale
from faster_ros.control.timing import sample_points


def _chunk(h=10, d=2, start=1.0, dt=0.1):
    return Chunk(np.arange(h * d, dtype=float).reshape(h, d), start_time=start, dt=dt)


def test_chunk_times_and_validation():
    c = _chunk()
    np.testing.assert_allclose(c.times(), 1.0 + 0.1 * np.arange(10))
    assert c.horizon == 10 and c.dim == 2 and c.end_time == pytest.approx(1.9)
    assert not c.positions.flags.writeable
    with pytest.raises(ValueError, match="dt"):
        Chunk(np.zeros((3, 2)), start_time=0.0, dt=0.0)
    with pytest.raises(ValueError, match="start_time"):
        Chunk(np.zeros((3, 2)), start_time=float("nan"), dt=0.1)
    with pytest.raises(ValueError, match="positions"):
        Chunk(np.zeros(3), start_time=0.0, dt=0.1)


def test_anchor_drops_past_steps_and_keeps_the_grid():
    c = _chunk()
    a = anchor(c, now=1.25, min_lead_s=0.1)  # keep steps at t >= 1.35 -> from step 4 (t=1.4)
    assert a.first_step == 4 and a.horizon == 6
    assert a.start_time == pytest.approx(1.4)
    np.testing.assert_array_equal(a.positions, c.positions[4:])
    # a step exactly at now + min_lead is kept
    assert anchor(c, now=1.2, min_lead_s=0.1).first_step == 3
    assert anchor(c, now=0.0, min_lead_s=0.05) is c
    assert anchor(c, now=1.9, min_lead_s=0.05) is None  # entirely late


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 40), start=st.floats(-1e3, 1e6), dt=st.floats(1e-3, 0.5),
       lag=st.floats(-1.0, 20.0), lead=st.floats(0.0, 0.2))
def test_anchor_drops_exactly_the_past_steps(h, start, dt, lag, lead):
    c = Chunk(np.zeros((h, 3)), start_time=start, dt=dt)
    now = start + lag
    a = anchor(c, now, lead)
    times = c.times()
    past = int(np.sum(times < now + lead - 1e-9))
    assert late_steps(c, now, lead) == past
    if past == h:
        assert a is None
    else:
        assert a.horizon == h - past and a.first_step == past
        np.testing.assert_allclose(a.times(), times[past:], rtol=0, atol=1e-9 * max(1, abs(start)))
        assert a.times()[0] >= now + lead - 1e-6


def test_time_scale_and_delay_steps():
    c = _chunk()
    s = time_scale(c, 2.0)
    assert s.dt == pytest.approx(0.2) and s.start_time == c.start_time
    assert time_scale(c, 1.0) is c
    with pytest.raises(ValueError):
        time_scale(c, 0.5)
    assert delay_steps(0.0, 0.1) == 0
    assert delay_steps(0.25, 0.1) == 3
    assert delay_steps(0.2, 0.1) == 2


def test_sample_points_holds_the_ends_and_interpolates_between():
    times = [1.0, 2.0, 4.0]
    values = [np.array([0.0, 10.0]), np.array([1.0, 10.0]), np.array([3.0, 0.0])]
    np.testing.assert_array_equal(sample_points(times, values, 0.5), [0.0, 10.0])
    np.testing.assert_array_equal(sample_points(times, values, 9.0), [3.0, 0.0])
    np.testing.assert_allclose(sample_points(times, values, 1.5), [0.5, 10.0])
    np.testing.assert_allclose(sample_points(times, values, 3.0), [2.0, 5.0])
    np.testing.assert_array_equal(sample_points(times, values, 2.0), [1.0, 10.0])
