"""The safety gate: graded responses and operator-actionable reasons."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.control import Chunk, SafetyGate
from faster_ros.embodiment import load_embodiment

G1 = load_embodiment("g1_inspire")
R1 = load_embodiment("r1lite_wbc")
ARM = load_embodiment("single_arm")
EMBODIMENTS = {n: load_embodiment(n) for n in ("g1_inspire", "r1lite_wbc", "single_arm")}


def _hold_chunk(emb, value=None, h=8):
    value = (emb.lower + emb.upper) / 2 if value is None else value
    return Chunk(np.tile(value, (h, 1)), start_time=10.0, dt=emb.control.dt)


def test_ok_chunk_passes_unchanged():
    gate = SafetyGate(G1)
    c = _hold_chunk(G1)
    r = gate.check(c, c.positions[0])
    assert r.accepted and r.action == "ok" and r.interventions == 0 and r.reasons == ()
    np.testing.assert_array_equal(r.chunk.positions, c.positions)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_never_clipped(bad):
    gate = SafetyGate(G1)
    p = np.array(_hold_chunk(G1).positions)
    p[3, G1.index("kRightElbow")] = bad
    r = gate.check(Chunk(p, 10.0, G1.control.dt))
    assert not r.accepted and r.action == "rejected" and r.chunk is None
    assert "kRightElbow step 3" in r.reasons[0] and "non-finite" in r.reasons[0]


def test_slightly_out_of_limit_clipped_far_out_rejected():
    gate = SafetyGate(G1)  # reject margin 5 % of the range: 0.157 rad for the elbow
    j = G1.index("kRightElbow")
    upper = G1.dimensions[j].upper
    p = np.array(_hold_chunk(G1, h=20).positions)
    p[12:, j] = upper + 0.02
    p[11, j] = (p[10, j] + p[12, j]) / 2  # keep the rate legal
    r = gate.check(Chunk(p, 10.0, 1.0))
    assert r.accepted and r.action == "clipped" and r.clipped == 8 and r.interventions == 8
    assert r.chunk.positions[:, j].max() == upper
    assert any("kRightElbow step 12: 2.11 rad above upper limit 2.09 rad" in s
               for s in r.reasons)
    p[12, j] = 2.31
    r = gate.check(Chunk(p, 10.0, 1.0))
    assert not r.accepted
    assert "kRightElbow step 12: 2.31 rad above upper limit 2.09 rad" in r.reasons[0]
    assert "reject margin" in r.reasons[0]
    p[12, j] = G1.dimensions[j].lower - 1.0
    r = gate.check(Chunk(p, 10.0, 1.0))
    assert not r.accepted and "below lower limit -1.05 rad" in r.reasons[0]


def test_too_fast_time_scaled_or_rejected():
    gate = SafetyGate(G1, max_time_scale=2.0)
    j = G1.index("kLeftElbow")  # max_rate 3 rad/s, dt 1/30: 0.1 rad per step
    dt = G1.control.dt
    p = np.array(_hold_chunk(G1, h=10).positions)
    p[:, j] = 0.5 + 0.15 * np.arange(10)  # 4.5 rad/s: needs 1.5x
    r = gate.check(Chunk(p, 10.0, dt), p[0])
    assert r.accepted and r.action == "time_scaled"
    assert r.time_scale == pytest.approx(1.5, rel=1e-5) and r.interventions == 1
    assert r.chunk.dt == pytest.approx(1.5 * dt, rel=1e-5) and r.chunk.start_time == 10.0
    assert re.search(r"kLeftElbow step \d->\d: 4.50 rad/s above max rate 3.00 rad/s",
                     r.reasons[0])
    p[:, j] = -1.0 + 0.31 * np.arange(10)  # 9.3 rad/s: needs 3.1x > 2x
    r = gate.check(Chunk(p, 10.0, dt), p[0])
    assert not r.accepted and "needs 3.10x time scaling" in r.reasons[0]
    assert r.refusal == "rate"


def test_velocity_dims_rate_is_an_acceleration():
    gate = SafetyGate(R1)
    j = R1.index("chassis_vx")  # 1 m/s^2, dt 1/15
    p = np.array(_hold_chunk(R1, h=6).positions)
    p[:, j] = [0.0, 0.2, 0.4, 0.4, 0.4, 0.4]  # 3 m/s^2: 3x
    r = gate.check(Chunk(p, 0.0, R1.control.dt))
    assert not r.accepted
    assert "chassis_vx step 0->1: 3.00 m/s/s above max acceleration 1.00 m/s/s" in r.reasons[0]


def test_seam_jump_rejected():
    gate = SafetyGate(G1)
    c = _hold_chunk(G1)
    current = np.array(c.positions[0])
    j = G1.index("kRightShoulderPitch")
    current[j] += 0.3  # > max(0.15, 3/30)
    r = gate.check(c, current)
    assert not r.accepted
    assert r.reasons[0].startswith("kRightShoulderPitch: seam jump 0.30 rad")
    assert "(limit 0.15 rad)" in r.reasons[0]
    current[j] = c.positions[0, j] + 0.14
    assert gate.check(c, current).accepted


def test_default_seam_limit_per_unit():
    lim = SafetyGate.default_seam_limit(R1)
    assert lim[R1.index("left_arm_joint1")] == pytest.approx(max(0.1, 2.0 / 15))
    assert lim[R1.index("left_gripper")] == pytest.approx(15.0)  # its own bound, in mm
    assert SafetyGate.default_seam_limit(ARM)[ARM.index("drive_joint")] == pytest.approx(0.1)
    assert lim[R1.index("chassis_vx")] == pytest.approx(1.0 * 0.2 * 2.0)


def test_wrong_dimension_count_rejected():
    r = SafetyGate(G1).check(Chunk(np.zeros((3, 4)), 0.0, 0.1))
    assert not r.accepted and "4 dimensions" in r.reasons[0]


@st.composite
def garbage_chunks(draw, emb):
    h = draw(st.integers(1, 12))
    d = emb.action_dim
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    span = emb.upper - emb.lower
    kind = draw(st.sampled_from(["smooth", "wild", "edge", "nan", "huge"]))
    base = emb.lower + span * rng.uniform(0, 1, size=d)
    if kind == "smooth":
        p = base + np.cumsum(rng.normal(0, 0.02, size=(h, d)) * span, axis=0)
    elif kind == "wild":
        p = emb.lower + span * rng.uniform(-0.2, 1.2, size=(h, d))
    elif kind == "edge":
        p = np.where(rng.uniform(size=(h, d)) < 0.5, emb.upper, emb.lower) + rng.normal(
            0, 0.03, size=(h, d)) * span
    elif kind == "nan":
        p = np.tile(base, (h, 1))
        p[rng.integers(h), rng.integers(d)] = rng.choice([np.nan, np.inf, -np.inf])
    else:
        p = np.tile(base, (h, 1)) * 1e12
    return Chunk(p, start_time=draw(st.floats(0, 1e5)), dt=emb.control.dt)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), name=st.sampled_from(["g1_inspire", "r1lite_wbc", "single_arm"]))
def test_accepted_chunks_always_satisfy_the_invariants(data, name):
    emb = EMBODIMENTS[name]
    gate = SafetyGate(emb)
    chunk = data.draw(garbage_chunks(emb))
    current = data.draw(st.one_of(st.none(), st.just("first")))
    cur = None if current is None else np.clip(np.nan_to_num(chunk.positions[0]), emb.lower,
                                                emb.upper)
    r = gate.check(chunk, cur)
    assert r.accepted == (r.chunk is not None)
    if not r.accepted:
        assert r.reasons and all(isinstance(s, str) and s for s in r.reasons)
        return
    p = r.chunk.positions
    assert np.all(np.isfinite(p))
    assert np.all(p >= emb.lower) and np.all(p <= emb.upper)
    assert np.all(np.diff(r.chunk.times()) > 0)
    if r.chunk.horizon > 1:
        rate = np.abs(np.diff(p, axis=0)) / r.chunk.dt
        assert np.all(rate <= emb.max_rate * (1 + 1e-5))
