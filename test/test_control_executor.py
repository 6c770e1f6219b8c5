"""The executor state machine: life cycle, watchdog, seams, holds, time jumps, and the property
that nothing it commands is ever non-finite, out of limits or discontinuous."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faster_ros.control import Chunk, ChunkExecutor, SafetyGate
from faster_ros.embodiment import load_embodiment

ARM = load_embodiment("single_arm")  # 20 Hz, 7 dims, execute 8, blend 0.15 s, watchdog 0.5 s
R1 = load_embodiment("r1lite_wbc")  # 15 Hz, 21 dims, 3 velocity dims (chassis)
DT = ARM.control.dt
EMBODIMENTS = {n: load_embodiment(n) for n in ("g1_inspire", "r1lite_wbc", "single_arm")}


def _mid(emb):
    return (emb.lower + emb.upper) / 2


def _ramp(emb, start_pos, t0, h=20, speed=0.5, dims=(0,)):
    """A chunk moving dims at `speed` (unit/s) from start_pos, starting at t0."""
    p = np.tile(start_pos, (h, 1)).astype(float)
    for j in dims:
        p[:, j] += speed * emb.control.dt * np.arange(h)
    return Chunk(p, start_time=t0, dt=emb.control.dt)


def _ready(emb=ARM, now=0.0):
    ex = ChunkExecutor(emb)
    ex.set_measured(_mid(emb), now)
    return ex


def test_inactive_until_first_chunk_then_starts_from_measured():
    ex = ChunkExecutor(ARM)
    cmd = ex.command(0.0)
    assert not cmd.active and cmd.holding and "joint states" in cmd.reason
    assert np.all(np.isfinite(cmd.positions))
    r = ex.submit(_ramp(ARM, _mid(ARM), 0.0), 0.0)
    assert not r.accepted and "no joint state" in r.reasons[0]
    measured = _mid(ARM) + 0.01
    ex.set_measured(measured, 0.0)
    assert not ex.command(0.0).active and ex.trajectory(0.0) is None
    r = ex.submit(_ramp(ARM, measured, 0.0), 0.02)
    assert r.accepted, r.reasons
    cmd = ex.command(0.02)
    assert cmd.active and not cmd.holding
    np.testing.assert_allclose(cmd.positions, measured)  # starts where the robot is
    assert ex.status.accepted == 1 and ex.status.active


def test_command_follows_anchored_chunk_and_velocities():
    ex = _ready()
    start = _mid(ARM)
    ex.submit(_ramp(ARM, start, 0.0, speed=0.5), 0.12)  # 0.12 s of inference
    # after the blend window, command equals the chunk at that time
    cmd = ex.command(0.6)
    assert cmd.positions[0] == pytest.approx(start[0] + 0.5 * 0.6, abs=1e-9)
    assert cmd.velocities[0] == pytest.approx(0.5)
    assert cmd.velocities[1] == 0


def test_watchdog_holds_when_the_trajectory_runs_out():
    ex = _ready()
    start = _mid(ARM)
    ex.submit(_ramp(ARM, start, 0.0, h=6, speed=0.5), 0.0)
    end = 5 * DT
    t, last = 0.0, None
    while t < end + 0.2:
        last_cmd = ex.command(t)
        if last is not None:
            assert np.all(np.abs(last_cmd.positions - last) <= ARM.max_rate * DT + 1e-9)
        last = last_cmd.positions
        t += DT
    assert last_cmd.holding and last_cmd.reason.startswith("watchdog: no valid chunk for")
    assert "trajectory ended" in last_cmd.reason
    np.testing.assert_allclose(last_cmd.positions, ex.commanded_at(np.array([t]))[0])
    assert np.all(last_cmd.velocities == 0)
    traj = ex.trajectory(t)
    assert len(traj.times) == 1 and traj.times[0] > t and np.all(traj.velocities == 0)


def test_watchdog_after_execute_horizon():
    ex = _ready()
    ex.submit(_ramp(ARM, _mid(ARM), 0.0, h=20, speed=0.1), 0.0)  # 20 steps = 0.95 s
    deadline = ARM.control.execute_steps * DT + ARM.control.watchdog_s  # 0.9 s
    for t in np.arange(0.0, deadline - 0.01, DT):  # ticks at the control rate
        assert not ex.command(t).holding
    assert not ex.command(deadline - 0.01).holding
    cmd = ex.command(deadline + 0.01)
    assert cmd.holding and "execute horizon" in cmd.reason
    assert cmd.reason.startswith("watchdog: no valid chunk for 0.91 s")


def test_seam_continuity_with_late_chunks():
    """Back-to-back chunks computed from observations 0.15 s old, each from a plan that
    disagrees slightly with the last: commands stay within max_rate * dt per tick."""
    ex = _ready()
    start = _mid(ARM)
    speed = 1.0
    t, last = 0.0, None
    obs_t = 0.0
    accepted = 0
    for tick in range(200):
        t = tick * DT
        if tick % ARM.control.execute_steps == 0:
            offset = 0.03 * (-1) ** (tick // 8)
            plan = _ramp(ARM, start + offset, obs_t, h=20, speed=speed, dims=(0, 1))
            plan = Chunk(plan.positions + speed * obs_t * np.isin(np.arange(7), (0, 1)),
                         obs_t, DT)
            plan = Chunk(np.clip(plan.positions, ARM.lower, ARM.upper), obs_t, DT)
            r = ex.submit(plan, t)
            accepted += r.accepted
            obs_t = t + DT  # next observation
        cmd = ex.command(t)
        if last is not None:
            assert np.all(np.abs(cmd.positions - last) <= ARM.max_rate * DT * (1 + 1e-6))
        last = cmd.positions
    assert accepted >= 20


def test_hold_then_resume_without_jump_and_refuse_older_chunks():
    ex = _ready()
    start = _mid(ARM)
    ex.submit(_ramp(ARM, start, 0.0, speed=0.5), 0.0)
    before = ex.command(0.3).positions
    ex.hold("operator: pause", 0.3 + DT)
    cmd = ex.command(0.4)
    assert cmd.holding and cmd.reason == "operator: pause"
    assert np.all(np.abs(cmd.positions - before) <= ARM.max_rate * DT + 1e-12)
    r = ex.submit(_ramp(ARM, cmd.positions, 0.2), 0.4)
    assert not r.accepted and "predates the hold" in r.reasons[0]
    r = ex.submit(_ramp(ARM, cmd.positions, 0.4), 0.45)
    assert r.accepted
    resumed = ex.command(0.45 + DT)
    assert not resumed.holding
    assert np.all(np.abs(resumed.positions - cmd.positions) <= ARM.max_rate * 2 * DT + 1e-12)


def test_seam_disagreement_rejected_and_entirely_late_rejected():
    ex = _ready()
    start = _mid(ARM)
    ex.submit(_ramp(ARM, start, 0.0, speed=0.0), 0.0)
    far = start.copy()
    far[2] += 0.3
    r = ex.submit(_ramp(ARM, far, 0.1, speed=0.0), 0.1)
    assert not r.accepted and "joint3: seam jump 0.30 rad" in r.reasons[0]
    assert r.refusal == "seam"
    r = ex.submit(_ramp(ARM, start, 0.0, h=4), 1.0)
    assert not r.accepted and r.reasons[0].startswith("chunk entirely late")
    assert r.refusal == ""
    r = ex.submit(_ramp(ARM, start, 5.0, h=4), 1.0)
    assert not r.accepted and "in the future" in r.reasons[0]
    assert ex.status.rejected == 3


def test_a_seam_within_the_bound_is_closed_at_half_the_rate_without_slowing_the_plan():
    """Both plans move the left waist at 1.2 rad/s; the new one is 0.24 rad ahead (seam bound
    0.25). Closed over the 0.1 s minimum blend, the offset would add 3.6 rad/s to the plan's 1.2,
    beyond the 3 rad/s rate even at the allowed 2x time scaling; the executor stretches the blend
    so the catch-up takes at most half the rate, and the plan keeps its timing."""
    aloha = load_embodiment("aloha_sim")
    dt = aloha.control.dt
    ex = _ready(aloha)
    start = _mid(aloha)
    ex.submit(_ramp(aloha, start, 0.0, h=32, speed=1.2), 0.0)
    now = 10 * dt
    ahead = ex.command(now + dt).positions.copy()
    ahead[0] += 0.24
    r = ex.submit(_ramp(aloha, ahead, now + dt, h=32, speed=1.2), now)  # first point kept
    assert r.accepted and r.time_scale == 1.0, r.summary
    cmds = np.array([ex.command(now + k * dt).positions for k in range(1, 32)])
    speed = np.abs(np.diff(cmds[:, 0])) / dt
    assert speed.max() <= (1.2 + 0.5 * aloha.max_rate[0]) * (1 + 1e-6)
    np.testing.assert_allclose(cmds[-1, 0], ahead[0] + 1.2 * 30 * dt, atol=1e-9)  # on the plan


def test_stalled_loop_holds_at_the_last_command():
    ex = _ready()
    ex.submit(_ramp(ARM, _mid(ARM), 0.0, speed=1.0), 0.0)
    last = ex.command(0.1).positions
    cmd = ex.command(0.1 + ARM.control.watchdog_s + 0.05)  # no tick for 0.55 s
    assert cmd.holding and cmd.reason.startswith("no tick for 0.55 s")
    np.testing.assert_array_equal(cmd.positions, last)  # no catch-up jump


def test_time_going_backwards_holds_and_resets_the_anchor():
    ex = _ready()
    start = _mid(ARM)
    ex.submit(_ramp(ARM, start, 10.0, speed=0.5), 10.0)
    last = ex.command(10.3).positions
    cmd = ex.command(2.0)  # sim time reset
    assert cmd.holding and "time jumped back 8.30 s" in cmd.reason
    np.testing.assert_array_equal(cmd.positions, last)
    assert ex.command(2.0 - 0.01).holding  # jitter below time_jump_s: no time passes
    r = ex.submit(_ramp(ARM, last, 2.0, speed=0.5), 2.0)  # new time base resumes
    assert r.accepted
    assert not ex.command(2.1).holding


def test_velocity_dims_zero_when_holding_and_trajectory_velocities():
    ex = _ready(R1)
    start = _mid(R1)
    p = _ramp(R1, start, 0.0, h=10, speed=0.3, dims=(0, R1.index("chassis_vx"))).positions
    r = ex.submit(Chunk(p, 0.0, R1.control.dt), 0.0)
    assert r.accepted, r.reasons
    cmd = ex.command(0.4)
    vx = R1.index("chassis_vx")
    assert cmd.positions[vx] > 0 and cmd.velocities[vx] == 0
    traj = ex.trajectory(0.4)
    assert np.all(np.diff(traj.times) > 0) and np.all(traj.times > 0.4)
    assert np.all(traj.velocities[-1] == 0) and np.all(traj.velocities[:, vx] == 0)
    assert traj.velocities[0, 0] == pytest.approx(0.3)
    assert traj.times[0] >= 0.4 + R1.control.min_lead_s - 1e-9
    np.testing.assert_allclose(traj.time_from_start(0.4), traj.times - 0.4)
    v0 = ex.command(0.5).positions[vx]
    ex.hold("stop", 0.5)
    cmd = ex.command(0.5 + R1.control.dt)  # ramps down at the acceleration limit (1 m/s^2)
    assert cmd.holding and np.all(cmd.velocities == 0)
    assert cmd.positions[vx] == pytest.approx(v0 - 1.0 * R1.control.dt)
    t = 0.5 + R1.control.dt
    while t < 0.5 + v0 / 1.0 + R1.control.dt:
        t += R1.control.dt
        cmd = ex.command(t)
    assert cmd.positions[vx] == 0
    traj = ex.trajectory(t)
    assert len(traj.times) == 1 and traj.positions[0, vx] == 0


# --------------------------------------------------------------------------------------------
# property: whatever is submitted, commands and trajectories stay finite, in limits, continuous


@st.composite
def _ops(draw):
    return draw(st.lists(
        st.one_of(
            st.tuples(st.just("tick"), st.integers(1, 12)),
            st.tuples(st.just("submit"), st.sampled_from(["smooth", "smooth", "offset", "brisk",
                                                           "wild", "edge", "nan", "huge",
                                                           "late", "fast"]),
                      st.floats(0.0, 0.4), st.integers(0, 2**31 - 1)),
            st.tuples(st.just("hold"), st.just(0)),
            st.tuples(st.just("jump"), st.floats(-5.0, 5.0)),
        ),
        min_size=1, max_size=30))


def _garbage_chunk(emb, kind, obs_t, current, rng, velocity=None, now=None):
    """A chunk from an observation at obs_t; `current` / `velocity` are the command at `now`."""
    h, d = emb.tokenizer.chunk_size, emb.action_dim
    span = emb.upper - emb.lower
    dt = emb.control.dt
    if kind in ("smooth", "late", "offset", "brisk", "fast"):
        velocity = np.zeros(d) if velocity is None else velocity
        step = {"smooth": 0.1, "late": 0.1, "offset": 0.1, "brisk": 0.5, "fast": 3.0}[kind]
        v = velocity + rng.normal(0, step, size=d) * emb.max_rate  # (D,) plan speed
        at_obs = current - velocity * ((now if now is not None else obs_t) - obs_t)
        p = at_obs + dt * np.arange(h)[:, None] * v
        if kind == "offset":  # a plan that disagrees with the command: blended or rejected
            p = p + rng.normal(0, 0.7, size=d) * SafetyGate.default_seam_limit(emb)
        p = np.clip(p, emb.lower, emb.upper)
        if kind == "late":
            obs_t -= 2.0
    elif kind == "wild":
        p = emb.lower + span * rng.uniform(-0.3, 1.3, size=(h, d))
    elif kind == "edge":
        p = np.where(rng.uniform(size=(h, d)) < 0.5, emb.upper, emb.lower)
        p = p + rng.normal(0, 0.02, size=(h, d)) * span
    elif kind == "nan":
        p = np.tile(current, (h, 1))
        p[rng.integers(h), rng.integers(d)] = np.nan
    else:
        p = np.tile(current, (h, 1)) * 1e9 + 1e9
    return Chunk(p, start_time=obs_t, dt=dt)


def _check_command(emb, cmd):
    assert np.all(np.isfinite(cmd.positions)) and np.all(np.isfinite(cmd.velocities))
    assert np.all(cmd.positions >= emb.lower) and np.all(cmd.positions <= emb.upper)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops(), name=st.sampled_from(["single_arm", "r1lite_wbc"]))
def test_executor_never_commands_garbage(ops, name):
    emb = EMBODIMENTS[name]
    dt = emb.control.dt
    ex = ChunkExecutor(emb)
    now = 100.0
    ex.set_measured(_mid(emb), now)
    last, last_t = None, None
    for op in ops:
        if op[0] == "tick":
            for _ in range(op[1]):
                now += dt
                cmd = ex.command(now)
                _check_command(emb, cmd)
                if cmd.active and last is not None and now - last_t == pytest.approx(dt):
                    jump = np.abs(cmd.positions - last)  # speed / acceleration per tick
                    assert np.all(jump <= emb.max_rate * dt * (1 + 1e-6) + 1e-9)
                if cmd.active:
                    last, last_t = cmd.positions, now
                traj = ex.trajectory(now)
                if traj is not None:
                    assert len(traj.times) >= 1
                    assert np.all(np.diff(traj.times) > 0) and np.all(traj.times > now)
                    assert np.all(np.isfinite(traj.positions))
                    assert np.all(np.isfinite(traj.velocities))
                    assert np.all(traj.positions >= emb.lower)
                    assert np.all(traj.positions <= emb.upper)
                    assert np.all(traj.velocities[-1] == 0)
                    assert traj.times[0] >= now + min(emb.control.min_lead_s, 0) - 1e-9
                    assert np.all(np.abs(traj.velocities) <= emb.max_rate * (1 + 1e-5))
        elif op[0] == "submit":
            _, kind, latency, seed = op
            rng = np.random.default_rng(seed)
            cmd = ex.command(now)
            chunk = _garbage_chunk(emb, kind, now - latency, cmd.positions, rng,
                                   velocity=cmd.velocities, now=now)
            r = ex.submit(chunk, now)
            if kind in ("nan", "huge", "late"):
                assert not r.accepted
            if r.accepted:
                assert np.all(np.isfinite(r.chunk.positions))
        elif op[0] == "hold":
            ex.hold("test hold", now)
        else:
            now += op[1]
            cmd = ex.command(now)
            _check_command(emb, cmd)
            last, last_t = (cmd.positions, now) if cmd.active else (last, last_t)
        _check_command(emb, ex.command(now))


def test_clipped_and_time_scaled_chunks_are_executed_and_counted():
    ex = _ready()
    start = _mid(ARM)
    j = ARM.index("drive_joint")  # [0, 0.85] rad, max_rate 2 rad/s
    p = np.tile(start, (20, 1))
    # 1 rad/s from rest: the blend's catch-up peaks at 1.69x, still below 2 rad/s
    p[:, j] = np.minimum(start[j] + 0.05 * np.arange(20), ARM.upper[j] + 0.02)
    r = ex.submit(Chunk(p, 0.0, DT), 0.0)
    assert r.accepted and r.action == "clipped" and r.clipped > 0
    assert ex.status.interventions == r.interventions
    for t in np.arange(0.0, 0.9, DT):
        cmd = ex.command(t)
    assert cmd.positions[j] == ARM.upper[j] and not cmd.holding
    ex2 = _ready()
    p = np.tile(start, (20, 1))
    p[10:, 2] += 0.25 * np.arange(10)  # 5 rad/s > 3.14 rad/s after the blend: 1.59x
    p = np.clip(p, ARM.lower, ARM.upper)
    r = ex2.submit(Chunk(p, 0.0, DT), 0.0)
    assert r.accepted and r.action == "time_scaled" and 1.5 < r.time_scale < 1.7
    traj = ex2.trajectory(0.0)
    steps = np.abs(np.diff(traj.positions, axis=0)) / np.diff(traj.times)[:, None]
    assert np.all(steps <= ARM.max_rate * (1 + 1e-6))


def test_reset_makes_it_inactive_and_restarts_from_the_new_measurement():
    ex = _ready()
    ex.submit(_ramp(ARM, _mid(ARM), 0.0), 0.0)
    assert ex.command(0.1).active
    ex.reset()  # e.g. handover to teleoperation
    assert not ex.command(0.2).active and ex.trajectory(0.2) is None
    moved = _mid(ARM) + 0.2  # the operator moved the arm
    ex.set_measured(moved, 0.3)
    r = ex.submit(_ramp(ARM, moved, 0.3), 0.3)
    assert r.accepted
    np.testing.assert_allclose(ex.command(0.3).positions, moved)


def test_jtc_velocities_never_overshoot_a_limit_plateau():
    ex = _ready()
    start = _mid(ARM)
    j = ARM.index("drive_joint")
    p = np.tile(start, (20, 1))
    p[:, j] = np.minimum(start[j] + 0.09 * np.arange(20), ARM.upper[j])
    assert ex.submit(Chunk(p, 0.0, DT), 0.0).accepted
    traj = ex.trajectory(0.0)
    # evaluate the cubic Hermite a JTC builds from (time, position, velocity) points
    t, x, v = traj.times, traj.positions[:, j], traj.velocities[:, j]
    for k in range(len(t) - 1):
        h = t[k + 1] - t[k]
        s = np.linspace(0, 1, 21)
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        y = h00 * x[k] + h10 * h * v[k] + h01 * x[k + 1] + h11 * h * v[k + 1]
        assert np.all(y <= ARM.upper[j] + 1e-12) and np.all(y >= ARM.lower[j] - 1e-12)


def test_concurrent_submit_and_command_smoke():
    import threading

    ex = _ready()
    errors = []
    stop = threading.Event()
    clock = [0.0]

    def ticker():
        try:
            while not stop.is_set():
                clock[0] += 0.001
                cmd = ex.command(clock[0])
                assert np.all(np.isfinite(cmd.positions))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=ticker)
    thread.start()
    for _ in range(50):
        ex.submit(_ramp(ARM, ex.command(clock[0]).positions, clock[0], speed=0.2), clock[0])
    stop.set()
    thread.join()
    assert not errors and ex.status.accepted + ex.status.rejected == 50
