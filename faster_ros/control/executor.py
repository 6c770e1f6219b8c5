"""The chunk executor state machine: what the executor node commands at every control tick.

Life cycle (:class:`ChunkExecutor`):

* *inactive* (after construction or :meth:`~ChunkExecutor.reset`): nothing is commanded;
  :meth:`~ChunkExecutor.command` returns ``active=False`` and the node publishes nothing, so the
  robot stays under whatever controlled it before (its own hold, teleoperation). Joint states
  (:meth:`~ChunkExecutor.set_measured`) keep the would-be starting point up to date.
* the first accepted chunk makes it *active*, starting exactly from the last measured position;
  from then on the command is a continuous trajectory: anchored, seam-blended and gated chunks
  replace the remainder of the previous one from their first time on.
* *holding* (still active): the trajectory ran out, the watchdog fired, :meth:`hold` was called,
  or time jumped. Position dimensions freeze at the last commanded position; velocity dimensions
  (a base twist) ramp down to zero at their acceleration limit ``max_rate`` (a 0.5 m/s base at
  1 m/s^2 stops within 0.5 s, without the jerk of an instant zero). The next accepted chunk
  resumes from the hold (blending from the ramp).

Watchdog: a chunk is expected every ``execute_steps`` steps. If no chunk is accepted for
``control.watchdog_s`` after the execute horizon of the last accepted one (its first
``execute_steps`` steps), or the trajectory runs out before, the executor holds with the reason
``"watchdog: no valid chunk for X s ..."``.

Time: if ``now`` goes backwards by more than ``time_jump_s`` (sim time reset, bag loop), or
forwards by more than ``control.watchdog_s`` between two calls (a stalled loop or a clock jump),
the executor holds at the last command and drops the trajectory (the anchor is reset; chunks from
the new time base resume normally). A smaller backwards step is treated as no time passing.

Order: a chunk whose observation is not newer than that of the last accepted chunk (a duplicate,
or a delivery out of order) is rejected: an older plan never replaces a newer one. A time jump
forgets that observation time (the new time base starts over).

Continuity: every accepted trajectory starts exactly at what was commanded at its first time, its
segments respect ``max_rate`` (the gate checks), and every hold starts at the last command, so
successive commands of any dimension differ by at most ``max_rate * (tick interval)`` (a speed
for position dimensions, an acceleration for velocity dimensions).

Thread safety: all public methods take one lock (the node calls them from a timer and from the
policy worker).

No rclpy here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from faster_ros import rotations as rot
from faster_ros.control.blending import blend_seam, catch_up_time
from faster_ros.control.chunk import Chunk, GateResult
from faster_ros.control.latch import apply_latches
from faster_ros.control.safety import SafetyGate
from faster_ros.control.timing import anchor
from faster_ros.embodiment import Embodiment

SAME_TIME_S = 1e-6  # old trajectory points closer than this to a new chunk's start are dropped


@dataclass(frozen=True)
class Command:
    """The setpoint for one control tick.

    ``positions`` (D,) are positions for position dimensions and velocities for velocity
    dimensions (a base twist); ``velocities`` (D,) are the slope of the trajectory at ``now``
    for position dimensions and 0 for velocity dimensions. ``active`` False means the executor is
    not driving the robot (no chunk accepted since start or reset): publish nothing.
    """

    positions: np.ndarray  # (D,)
    velocities: np.ndarray  # (D,)
    holding: bool
    reason: str
    active: bool = True


@dataclass(frozen=True)
class Trajectory:
    """The remaining points of the active trajectory, for JointTrajectory outputs.

    ``times`` (K,) absolute, strictly increasing, the first at least ``min_lead_s`` after ``now``
    (or the final point if that is closer); ``positions`` (K, D); ``velocities`` (K, D) finite
    differences chosen so that a cubic through the points does not overshoot (see
    :func:`_monotone_velocities`), zero at the last point and for velocity dimensions. While
    holding it is one point at the hold position, ``max(min_lead_s, dt)`` ahead. A JTC given
    positions and velocities interpolates cubically: between a stop and a start its speed can
    briefly exceed the segment's rate by up to 1.5x; publish positions only for strictly linear
    interpolation.
    """

    times: np.ndarray  # (K,)
    positions: np.ndarray  # (K, D)
    velocities: np.ndarray  # (K, D)

    def time_from_start(self, start: float) -> np.ndarray:
        """(K,) seconds from ``start`` (the header stamp) to each point."""
        return self.times - start


@dataclass(frozen=True)
class ExecutorStatus:
    active: bool
    holding: bool
    reason: str
    accepted: int
    rejected: int
    interventions: int
    last_verdict: GateResult | None
    last_accept_time: float | None
    latched_steps: int = 0  # gripper commands the latch held closed or ramped open


def _monotone_velocities(times: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K, D) point velocities for cubic (JTC) interpolation that never overshoots: the harmonic
    mean of the two adjacent segment slopes where they agree in sign, else 0 (Fritsch-Carlson);
    0 at the last point. Between two points the cubic then stays within their values, so within
    the limits, and no point velocity exceeds the faster adjacent segment's rate."""
    vel = np.zeros_like(points)
    if len(times) < 2:
        return vel
    seg = np.diff(points, axis=0) / np.diff(times)[:, None]  # (K-1, D)
    vel[0] = seg[0]
    s0, s1 = seg[:-1], seg[1:]
    same = s0 * s1 > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        vel[1:-1] = np.where(same, 2 * s0 * s1 / (s0 + s1), 0.0)
    return vel


class ChunkExecutor:
    """Anchor -> blend -> gate each submitted chunk, and interpolate the accepted trajectory.

    See the module docstring for the life cycle, watchdog, time and continuity rules.
    ``gate`` defaults to ``SafetyGate(embodiment)``; ``time_jump_s`` is the backwards step of
    ``now`` treated as a clock jump. ``quaternions`` lists the column groups (w, x, y, z) that
    hold unit quaternions (end-effector rotations, see faster_ros.control.pose): they are
    interpolated and seam-blended by slerp, never component-wise.
    """

    def __init__(self, embodiment: Embodiment, gate: SafetyGate | None = None,
                 time_jump_s: float = 0.05, quaternions: tuple[tuple[int, ...], ...] = ()):
        self.embodiment = embodiment
        self.gate = gate or SafetyGate(embodiment)
        c = embodiment.control
        self.dt = c.dt
        self.min_lead_s = max(c.min_lead_s, 0.0)  # never anchor a chunk in the past
        self.blend_time_s = c.blend_time_s
        self.execute_steps = c.execute_steps
        self.watchdog_s = c.watchdog_s
        self.time_jump_s = time_jump_s
        self.quaternions = tuple(tuple(int(j) for j in q) for q in quaternions)
        self._is_velocity = embodiment.is_velocity
        self.latches = embodiment.latches
        self._latched_steps = self._pending_latched = 0
        self._latest_measured: np.ndarray | None = None
        self._lock = threading.Lock()
        self._accepted = self._rejected = self._interventions = 0
        self._last_verdict: GateResult | None = None
        self.reset()

    # ----------------------------------------------------------------------------------------
    # public API

    def reset(self) -> None:
        """Forget the trajectory, the hold and the clock and become inactive (e.g. on handover to
        teleoperation; feed :meth:`set_measured` again before the next chunk). Counters stay."""
        with self._lock:
            self._times: np.ndarray | None = None  # (K,) active trajectory, None when holding
            self._points: np.ndarray | None = None  # (K, D)
            self._hold: np.ndarray | None = None  # (D,) hold / start position at _hold_since
            self._hold_since = 0.0  # velocity dims ramp to zero from here
            self._active = False
            self._reason = "waiting for joint states"
            self._explicit_hold_time: float | None = None
            self._deadline = np.inf
            self._last_accept: float | None = None
            self._last_obs_time = -np.inf  # observation time of the newest accepted chunk
            self._last_now: float | None = None
            self._last_output: np.ndarray | None = None
            self._handoff_blend_s: float | None = None  # set by start_from, for the next chunk
            self._handoff_seam = True

    def reanchor(self, reason: str, now: float) -> None:
        """The robot was moved by something outside the stack (a scene reset between episodes,
        a person): forget the trajectory and the held command and become inactive (nothing is
        commanded), so that the next chunk starts from the next measured position instead of
        being refused for its distance to a command the robot no longer holds. Chunks computed
        from observations before ``now`` are refused."""
        self.reset()
        with self._lock:
            self._explicit_hold_time = float(now)
            self._reason = reason

    def set_measured(self, positions: np.ndarray, now: float) -> None:
        """Measured joint positions (D,) in action order (velocity dimensions ignored, may be
        NaN). Used only while inactive: the first chunk starts from the latest measurement."""
        p = np.asarray(positions, dtype=np.float64).reshape(-1)
        if p.shape != (self.embodiment.action_dim,):
            raise ValueError(f"set_measured: expected {self.embodiment.action_dim} values, got "
                             f"{p.shape}")
        with self._lock:
            self._latest_measured = p.copy()  # the gripper latches read it while active (a
            # latch ignores its dimension when the value is not finite)
            if self._active:
                return
            p = np.where(self._is_velocity, 0.0, p)
            bad = [self.embodiment.dim_names[j] for j in np.flatnonzero(~np.isfinite(p))]
            if bad:
                self._reason = f"measured state has non-finite values for {', '.join(bad)}"
                return
            self._hold = np.clip(p, self.gate.lower, self.gate.upper)
            self._hold_since = float(now)
            self._reason = "ready: waiting for the first chunk"

    def start_from(self, position: np.ndarray, now: float, blend_time_s: float | None = None,
                   reason: str = "handoff: holding the current command",
                   check_seam: bool = False) -> None:
        """Become active holding ``position`` (D,): what the controllers are commanded now, e.g.
        the operator's command at a TELEOP -> POLICY switch (velocity dimensions ramp down from
        their value in it). The next accepted chunk is cross-faded in from this hold over
        ``blend_time_s`` (default ``control.blend_time_s``). Unless ``check_seam``, its first
        step is not refused for being far from the hold (after teleoperation the robot lags the
        command; the blend removes the offset, and the gate still checks the rates and limits of
        the blended chunk and time-scales or rejects it)."""
        p = np.asarray(position, dtype=np.float64).reshape(-1)
        if p.shape != (self.embodiment.action_dim,) or not np.isfinite(p).all():
            raise ValueError(f"start_from: expected {self.embodiment.action_dim} finite values, "
                             f"got {p}")
        with self._lock:
            now = self._tick(now)
            self._active = True
            self._enter_hold(np.clip(p, self.gate.lower, self.gate.upper), reason, now)
            self._explicit_hold_time = None
            self._last_output = self._hold.copy()
            self._handoff_blend_s = self.blend_time_s if blend_time_s is None else blend_time_s
            self._handoff_seam = check_seam

    def submit(self, chunk: Chunk, now: float) -> GateResult:
        """Anchor ``chunk`` at ``now``, blend it from the current command, gate it; if accepted
        it replaces the active trajectory from its first time on."""
        with self._lock:
            now = self._tick(now)
            self._pending_latched = 0
            result = self._evaluate(chunk, now)
            self._last_verdict = result
            if result.accepted:
                self._last_obs_time = chunk.start_time
                self._accepted += 1
                self._latched_steps += self._pending_latched
                self._interventions += result.interventions
                self._accept(result.chunk, now)
            else:
                self._rejected += 1
            return result

    def command(self, now: float) -> Command:
        """The setpoint at ``now`` (linear interpolation of the active trajectory). While
        inactive, ``active=False`` and the positions are the measured start (or the limits'
        clip of zero before any measurement): do not publish them."""
        with self._lock:
            now = self._tick(now)
            d = self.embodiment.action_dim
            zeros = np.zeros(d)
            if not self._active:
                start = self._hold if self._hold is not None else np.clip(
                    zeros, self.gate.lower, self.gate.upper)
                return Command(start.copy(), zeros, True, self._reason, active=False)
            if self._points is None:
                positions, velocities = self._hold_at(np.array([now]))[0], zeros
            else:
                positions, velocities = self._interpolate(now)
            self._last_output = positions
            return Command(positions.copy(), velocities, self._points is None, self._reason)

    def trajectory(self, now: float) -> Trajectory | None:
        """Points of the active trajectory after ``now`` (None while inactive)."""
        with self._lock:
            now = self._tick(now)
            if not self._active:
                return None
            if self._points is None:
                return self._hold_trajectory(now, self._hold)  # position dims only
            times, points = self._times, self._points
            keep = times >= now + self.min_lead_s  # the first point at least a period ahead
            if self.min_lead_s <= 0:
                keep = times > now
            if not keep.any():  # the end is closer than a period: go there
                keep = times > now
                if not keep.any():
                    return self._hold_trajectory(now, points[-1])
            vel = _monotone_velocities(times, points)
            vel[:, self._is_velocity] = 0.0
            return Trajectory(times[keep].copy(), points[keep].copy(), vel[keep])

    def _hold_trajectory(self, now: float, position: np.ndarray) -> Trajectory:
        lead = max(self.min_lead_s, self.dt)
        position = np.where(self._is_velocity, 0.0, position)
        return Trajectory(np.array([now + lead]), position[None].copy(),
                          np.zeros((1, len(position))))

    def hold(self, reason: str, now: float) -> None:
        """Freeze at the currently commanded position (velocity dimensions ramp down to zero at
        their acceleration limit). Chunks computed from observations before ``now`` are refused
        afterwards; a later one resumes."""
        with self._lock:
            now = self._tick(now)
            self._explicit_hold_time = now
            if not self._active:
                self._reason = reason
                return
            position = self._commanded_at(np.array([now]))[0]
            self._enter_hold(position, reason, now)

    @property
    def status(self) -> ExecutorStatus:
        with self._lock:
            return ExecutorStatus(
                active=self._active, holding=self._points is None, reason=self._reason,
                accepted=self._accepted, rejected=self._rejected,
                interventions=self._interventions, last_verdict=self._last_verdict,
                last_accept_time=self._last_accept, latched_steps=self._latched_steps)

    def commanded_at(self, times: np.ndarray) -> np.ndarray:
        """(K, D) what would be commanded at ``times`` if no new chunk arrived."""
        with self._lock:
            return self._commanded_at(np.asarray(times, dtype=np.float64))

    # ----------------------------------------------------------------------------------------
    # internals (called with the lock held)

    def _enter_hold(self, position: np.ndarray, reason: str, since: float) -> None:
        """Hold ``position`` (velocity dims ramping down from their value at ``since``)."""
        self._hold = np.array(position, dtype=np.float64)
        self._hold_since = since
        self._times = self._points = None
        self._deadline = np.inf
        self._reason = reason

    def _tick(self, now: float) -> float:
        """Advance the clock to ``now``: time jumps and the watchdog. Returns the effective now."""
        now = float(now)
        if not np.isfinite(now):
            raise ValueError(f"ChunkExecutor: now must be finite, got {now!r}")
        last = self._last_now
        if last is not None and now < last:
            if last - now <= self.time_jump_s:
                return last  # jitter: no time passed
            self._time_jump(f"time jumped back {last - now:.2f} s (sim time reset?)", now)
        elif (last is not None and self._active and self._points is not None
              and now - last > self.watchdog_s):
            self._time_jump(f"no tick for {now - last:.2f} s (stalled loop or clock jump)", now)
        self._last_now = now
        if self._points is not None:
            if now > self._times[-1]:
                self._enter_hold(self._points[-1], self._watchdog_text(now, "trajectory ended"),
                                 float(self._times[-1]))
            elif now > self._deadline:
                self._enter_hold(self._interpolate(now)[0],
                                 self._watchdog_text(now, "execute horizon passed"), now)
        return now

    def _time_jump(self, what: str, now: float) -> None:
        if self._active:
            if self._last_output is not None:
                position = self._last_output
            else:
                position = self._commanded_at(np.array([self._last_now]))[0]
            self._enter_hold(position, f"{what}: holding, trajectory dropped", now)
        if self._explicit_hold_time is not None:
            self._explicit_hold_time = now
        self._last_accept = now if self._last_accept is not None else None
        self._last_obs_time = -np.inf  # chunks of the new time base are not "older"

    def _watchdog_text(self, now: float, why: str) -> str:
        since = now - self._last_accept if self._last_accept is not None else float("nan")
        return f"watchdog: no valid chunk for {since:.2f} s ({why})"

    def _ramp(self, start: np.ndarray, since: float, times: np.ndarray) -> np.ndarray:
        """(K, D) ``start`` held: position dims constant, velocity dims decelerating to zero at
        max_rate from ``since``."""
        out = np.broadcast_to(start, (len(times), len(start))).copy()
        elapsed = np.maximum(times - since, 0.0)[:, None]  # (K, 1)
        v = start[self._is_velocity]
        rate = self.gate.max_rate[self._is_velocity]
        out[:, self._is_velocity] = np.sign(v) * np.maximum(np.abs(v) - rate * elapsed, 0.0)
        return out

    def _hold_at(self, times: np.ndarray) -> np.ndarray:
        return self._ramp(self._hold, self._hold_since, times)

    def _commanded_at(self, times: np.ndarray) -> np.ndarray:
        """(K, D) what is commanded at ``times`` if no new chunk arrives (ignoring the
        watchdog deadline): the trajectory, then a hold of its last point."""
        if self._points is None:
            return self._hold_at(times)
        values = self._interp_many(times)
        after_end = times > self._times[-1]
        if after_end.any():
            values[after_end] = self._ramp(self._points[-1], float(self._times[-1]),
                                           times[after_end])
        return values

    def _interp_many(self, t: np.ndarray) -> np.ndarray:
        times, points = self._times, self._points
        if len(times) == 1:
            return np.broadcast_to(points[0], (len(t), points.shape[1])).copy()
        tc = np.clip(t, times[0], times[-1])
        i = np.clip(np.searchsorted(times, tc, side="right") - 1, 0, len(times) - 2)
        a = (tc - times[i]) / (times[i + 1] - times[i])
        out = points[i] + a[:, None] * (points[i + 1] - points[i])
        for cols in self.quaternions:  # rotations move on the sphere, never component-wise
            c = list(cols)
            out[:, c] = rot.slerp(points[i][:, c], points[i + 1][:, c], a)
        return out

    def _interpolate(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(positions, velocities) of the active trajectory at ``now``."""
        times, points = self._times, self._points
        position = self._interp_many(np.array([now]))[0]
        velocity = np.zeros_like(position)
        if len(times) > 1 and times[0] <= now < times[-1]:
            i = int(np.searchsorted(times, now, side="right") - 1)
            velocity = (points[i + 1] - points[i]) / (times[i + 1] - times[i])
            velocity[self._is_velocity] = 0.0
        return position, velocity

    def _evaluate(self, chunk: Chunk, now: float) -> GateResult:
        reasons = self.gate.check_values(chunk)  # the whole chunk, past steps included
        if reasons:
            return GateResult.reject(*reasons)
        if self._hold is None and self._points is None:
            return GateResult.reject("no joint state received yet: the executor does not know "
                                     "where the robot is")
        if self._explicit_hold_time is not None and chunk.start_time < self._explicit_hold_time:
            return GateResult.reject(
                f"chunk from an observation at t={chunk.start_time:.3f} predates the hold at "
                f"t={self._explicit_hold_time:.3f} ({self._reason})")
        if chunk.start_time <= self._last_obs_time:
            return GateResult.reject(
                f"chunk from an observation at t={chunk.start_time:.3f} is not newer than the "
                f"chunk being executed (observation t={self._last_obs_time:.3f}): duplicate or "
                f"out-of-order delivery")
        future = chunk.start_time - now
        if future > max(self.min_lead_s, self.dt) + self.time_jump_s:
            return GateResult.reject(
                f"chunk starts {future:.2f} s in the future (t={chunk.start_time:.3f}, now "
                f"{now:.3f}): policy and executor clocks disagree?")
        anchored = anchor(chunk, now, self.min_lead_s)
        if anchored is None:
            late = now + self.min_lead_s - chunk.end_time
            return GateResult.reject(
                f"chunk entirely late: its last step (t={chunk.end_time:.3f}) is {late:.3f} s "
                f"before now + min_lead_s; inference took longer than the chunk "
                f"({chunk.horizon} steps of {chunk.dt:.3f} s)")
        current = self._commanded_at(np.array([anchored.start_time]))[0]
        notes: tuple[str, ...] = ()
        if self.latches:  # a gripper holding something stays closed until clearly opened
            latched, changed = apply_latches(anchored.positions, current, self._latest_measured,
                                             self.latches)
            if changed:
                anchored = replace(anchored, positions=latched)
                self._pending_latched = sum(changed.values())
                notes = tuple(
                    f"{self.embodiment.dim_names[latch.index]}: gripper latch changed "
                    f"{changed[latch.index]} of {anchored.horizon} steps (it holds an object: "
                    f"kept closed until the policy asks for {latch.open_above:g} or more, then "
                    f"opened at max_rate)" for latch in self.latches if latch.index in changed)
        blend_time = self.blend_time_s
        if self._handoff_blend_s is not None:  # first chunk after start_from
            blend_time = self._handoff_blend_s
        if self._handoff_blend_s is None or self._handoff_seam:
            seam = self.gate.check_seam(anchored.positions[0], current)
            if seam:
                return GateResult.reject(*(f"policy disagrees with the current command: {s}"
                                           for s in seam), refusal="seam")
        # a large seam is closed over a longer window, at no more than SEAM_RATE_SHARE of the
        # rate limit (never longer than the chunk): the rate gate keeps the plan's own speed
        blend_time = min(catch_up_time(anchored.positions[0] - current, self.gate.max_rate,
                                       max(blend_time, anchored.dt)),
                         max(anchored.end_time - anchored.start_time, anchored.dt))
        blended = blend_seam(anchored, self._commanded_at, blend_time,
                             quaternions=self.quaternions)
        result = self.gate.check(blended, current)
        return replace(result, reasons=result.reasons + notes) if result.accepted else result

    def _accept(self, chunk: Chunk, now: float) -> None:
        t0 = chunk.start_time
        if self._points is not None:
            times, points = self._times, self._points
            first = max(int(np.searchsorted(times, now, side="right")) - 1, 0)
            keep = np.arange(first, len(times))
            keep = keep[times[keep] < t0 - SAME_TIME_S]
            prefix_t, prefix_p = times[keep], points[keep]
        elif t0 - now > SAME_TIME_S:
            prefix_t, prefix_p = np.array([now]), self._hold_at(np.array([now]))
        else:
            prefix_t, prefix_p = np.zeros(0), np.zeros((0, chunk.dim))
        self._times = np.concatenate([prefix_t, chunk.times()])
        self._points = np.concatenate([prefix_p, chunk.positions])
        self._hold = None
        self._active = True
        self._explicit_hold_time = None
        self._handoff_blend_s = None
        self._reason = ""
        self._last_accept = now
        remaining = max(self.execute_steps - chunk.first_step, 0)
        self._deadline = t0 + remaining * chunk.dt + self.watchdog_s
