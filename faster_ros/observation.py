"""Time-aligned observation assembly: camera frames + joint states -> one policy observation.

Approximate-time semantics in the spirit of message_filters' ApproximateTimeSynchronizer, with a
simpler, documented search ("newest common time"):

* One input is the *reference* (the first camera, or the first joint input when there is no
  camera). Its buffered stamps, newest first, are the candidate observation times ``t``.
* For a candidate ``t``, every other camera contributes its frame nearest to ``t`` (ties: the
  newer); it must lie within ``slop_s`` of ``t``. Every joint contributes its value at ``t``:
  linearly interpolated between the two samples that bracket ``t`` when both are within
  ``slop_s`` of it (the value *at* ``t``, whose time counts as ``t``), else the nearest sample
  within ``slop_s`` (zero-order hold; never extrapolated). Joints are gathered by name, so one
  joint input may be split over several messages (several drivers on ``/joint_states``).
  ``input_stamps`` of a joint input is the newest message stamp it used (a real header stamp).
* The newest candidate for which every input aligns, is within its age budget (``now - time of
  the data used <= max_age_s``; for a joint input, its oldest joint value) and has finite joint
  values becomes the observation; its ``stamp`` is the reference frame's stamp. Older candidates
  are tried only while the reference itself is within its budget, so the result is the newest
  consistent set or a failure (the reason of the newest candidate).

An observation is never built from a stale input, a joint never received, non-finite joint values,
or samples stamped in the future (beyond ``future_tolerance_s``: "clock jump?"). Each failure
gives ``observation=None`` and one operator-actionable ``reason``; the first failing check wins, in
this order: clock jump back, future stamps, never received, stale, non-finite newest joint sample,
alignment. Out-of-order samples are inserted in stamp order, exact duplicates dropped, samples
older than the retention window dropped: these are reported in ``notes``, not as failures.

Memory: each input keeps a sorted buffer bounded in time (cameras: ``min(history_s, max_age_s +
slop_s)``; joints: ``min(history_s, max_age_s + 2 slop_s)``, pruned at each assemble) and in count
(cameras: twice their nominal rate over that window, joints: ``max_joint_samples``).

State history (for a policy conditioned on recent motion, LeRobot's ``n_obs_steps``): with
``state_history_s`` = (L_1, .., L_K) seconds the observation also carries ``state_history``
(K, S), the state at ``stamp - L_k`` for each lag, linearly interpolated per joint between the
finite samples that bracket that time. When the buffer does not reach that far back yet (just
after start-up or a reset) the oldest buffered value is used, as training clamps to an episode's
first step; joint buffers are kept ``max(L)`` longer for it.

Frames may be given decoded, as (H, W, 3) uint8 RGB, or as a zero-argument callable returning
one (lazy decoding: only the frames used are decoded, once per assemble).

Thread safety: one lock; add_* may be called from sensor callbacks while another thread assembles.

No rclpy here.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from faster_ros.embodiment import Embodiment

Frame = np.ndarray | Callable[[], np.ndarray]


@dataclass(frozen=True)
class Observation:
    """One time-aligned policy input."""

    stamp: float  # s, the reference input's stamp
    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8 RGB
    state: np.ndarray  # (S,) float64 in embodiment.state_joints order
    input_stamps: dict[str, float]  # camera name / joint topic -> newest message stamp used
    instruction: str = ""
    # (K, S) states at stamp - L for each of the assembler's state_history_s lags; None: no lags
    state_history: np.ndarray | None = None


@dataclass(frozen=True)
class AssemblyResult:
    observation: Observation | None
    reason: str  # "" when ok, else operator-actionable
    ages: dict[str, float]  # input name -> age of its newest sample at `now` (inf: never)
    notes: tuple[str, ...] = ()  # dropped duplicates / out-of-order / bad samples since last call

    @property
    def ok(self) -> bool:
        return self.observation is not None


class _Buffer:
    """Samples sorted by stamp, bounded in count (oldest dropped first)."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.stamps: list[float] = []
        self.values: list = []

    def __len__(self) -> int:
        return len(self.stamps)

    def insert(self, stamp: float, value) -> int:
        """Insert in order; returns the index, or -1 if a sample with this stamp exists."""
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return -1
        self.stamps.insert(i, stamp)
        self.values.insert(i, value)
        if len(self.stamps) > self.max_len:
            del self.stamps[0], self.values[0]
            i -= 1
        return i

    def find(self, stamp: float) -> int:
        i = bisect.bisect_left(self.stamps, stamp)
        return i if i < len(self.stamps) and self.stamps[i] == stamp else -1

    def prune_before(self, t: float) -> None:
        i = bisect.bisect_left(self.stamps, t)
        del self.stamps[:i], self.values[:i]

    def drop_after(self, t: float) -> list[float]:
        i = bisect.bisect_right(self.stamps, t)
        dropped = self.stamps[i:]
        del self.stamps[i:], self.values[i:]
        return dropped


@dataclass
class _Input:
    name: str  # camera name or joint topic
    label: str  # "camera 'head'" / "joint input '/joint_states'"
    max_age_s: float
    retention_s: float
    buffer: _Buffer
    joints: tuple[str, ...] = ()
    last_stamp: float = -math.inf  # newest stamp ever accepted (survives pruning)
    last_present: np.ndarray | None = None  # joints: (J,) newest stamp each joint was present
    future: float = 0.0  # largest future offset dropped recently (0: none)
    future_at: float = -math.inf
    notes: dict[str, list] = field(default_factory=dict)  # kind -> [count, last detail]

    def note(self, kind: str, detail: str) -> None:
        entry = self.notes.setdefault(kind, [0, ""])
        entry[0] += 1
        entry[1] = detail


def _fmt_names(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


class ObservationAssembler:
    """Buffers camera frames and joint states and assembles time-aligned observations.

    See the module docstring for the alignment, staleness and memory rules. ``slop_s`` defaults to
    ``embodiment.control.slop_s``; ``reference`` names the input whose stamps are candidate
    observation times (default: the first camera). ``clock_jump_s``: a backwards step of ``now``
    larger than this clears all buffers (a smaller one counts as no time passing).
    ``future_tolerance_s``: how far ahead of ``now`` a stamp may be (clock skew between machines)
    before it is treated as a clock jump.
    """

    def __init__(
        self,
        embodiment: Embodiment,
        history_s: float = 1.0,
        slop_s: float | None = None,
        *,
        reference: str | None = None,
        future_tolerance_s: float = 0.05,
        clock_jump_s: float = 0.5,
        max_joint_samples: int = 1000,
        state_history_s: Sequence[float] = (),
    ):
        self.embodiment = embodiment
        self.slop_s = embodiment.control.slop_s if slop_s is None else float(slop_s)
        for name, value in (("history_s", history_s), ("slop_s", self.slop_s),
                            ("future_tolerance_s", future_tolerance_s),
                            ("clock_jump_s", clock_jump_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"ObservationAssembler: {name} must be finite and >= 0, got "
                                 f"{value!r}")
        if history_s <= 0 or max_joint_samples < 2:
            raise ValueError("ObservationAssembler: history_s must be > 0 and max_joint_samples "
                             ">= 2")
        self.history_s = float(history_s)
        self.future_tolerance_s = float(future_tolerance_s)
        self.clock_jump_s = float(clock_jump_s)
        self._cameras: dict[str, _Input] = {}
        for cam in embodiment.cameras:
            keep = min(self.history_s, cam.max_age_s + self.slop_s)
            max_len = math.ceil(keep * cam.rate_hz * 2) + 4
            self._cameras[cam.name] = _Input(cam.name, f"camera {cam.name!r}", cam.max_age_s,
                                             keep, _Buffer(max_len))
        self._joints: dict[str, _Input] = {}
        self.state_history_s: tuple[float, ...] = ()
        for ji in embodiment.joint_inputs:
            keep = min(self.history_s, ji.max_age_s + 2 * self.slop_s)
            self._joints[ji.topic] = _Input(
                ji.topic, f"joint input {ji.topic!r}", ji.max_age_s, keep,
                _Buffer(max_joint_samples), joints=ji.joints,
                last_present=np.full(len(ji.joints), -np.inf))
        self._inputs = {**self._cameras, **self._joints}
        if len(self._inputs) != len(self._cameras) + len(self._joints):
            raise ValueError("ObservationAssembler: a camera is named like a joint topic")
        if reference is None:
            reference = next(iter(self._cameras), None) or next(iter(self._joints))
        if reference not in self._inputs:
            raise ValueError(f"ObservationAssembler: unknown reference input {reference!r} "
                             f"(inputs: {_fmt_names(self._inputs)})")
        self.reference = reference
        # state_joints order -> (topic, column)
        self._state_index = [(ji.topic, ji.joints.index(j)) for j in embodiment.state_joints
                             for ji in embodiment.joint_inputs if j in ji.joints]
        self._lock = threading.Lock()
        self._last_now: float | None = None
        self.set_state_history(state_history_s)

    def set_state_history(self, lags_s: Sequence[float]) -> None:
        """Also give the state ``lags_s`` seconds before each observation
        (``Observation.state_history``); ``()`` for none. Joint buffers are kept that much
        longer."""
        lags = tuple(float(x) for x in lags_s)
        if not all(math.isfinite(x) and x > 0 for x in lags) or list(lags) != sorted(set(lags)):
            raise ValueError(f"ObservationAssembler: state_history_s must be increasing positive "
                             f"seconds, got {tuple(lags_s)!r}")
        with self._lock:
            extra = max(lags, default=0.0)
            if extra > 0:
                # the observation time is the reference's stamp, which may lag ``now`` by up to
                # the reference's staleness budget (+ slop) when the node assembles late: keep
                # the samples around (that stamp - the longest lag), not (now - lag), or a slow
                # assemble would see a pruned history and predict differently
                extra += self._inputs[self.reference].max_age_s + self.slop_s
            for ji in self.embodiment.joint_inputs:
                inp = self._joints[ji.topic]
                inp.retention_s = min(self.history_s, ji.max_age_s + 2 * self.slop_s) + extra
            self.state_history_s = lags

    # ----------------------------------------------------------------------------------------
    # input

    def newest_stamp(self, name: str) -> float:
        """Stamp of the newest sample of an input (-inf before any)."""
        with self._lock:
            return self._inputs[name].last_stamp

    def cameras_pending(self, t: float) -> tuple[str, ...]:
        """Cameras other than the reference whose frame for ``t`` is still on its way: their
        next frame (due one period after their newest) falls within the sync window of ``t``
        (a quarter period, at most ``slop_s``) while their newest is outside it. That is a rig
        whose cameras are triggered together (one driver publishing several in a row, a few ms
        apart): assembling at the reference frame's arrival would take the others' previous
        frames, a whole period older. Free-running cameras out of phase are not waited for (the
        wait would cost more than the nearer frame gains). Waiting for these, at most
        :meth:`frame_wait_s`, gives the freshest set."""
        with self._lock:
            out = []
            for cam in self.embodiment.cameras:
                if cam.name == self.reference or cam.rate_hz <= 0:
                    continue
                window = min(self.slop_s, 0.25 / cam.rate_hz)
                last = self._cameras[cam.name].last_stamp
                due = last + 1.0 / cam.rate_hz  # the next frame's stamp
                if last < t - window and t - window <= due <= t + window:
                    out.append(cam.name)
            return tuple(out)

    def frame_wait_s(self, cameras: Sequence[str]) -> float:
        """The longest wait for ``cameras``: half the longest of their frame periods."""
        rates = {cam.name: cam.rate_hz for cam in self.embodiment.cameras}
        return max((0.5 / rates[c] for c in cameras if rates.get(c, 0) > 0), default=0.0)

    def reset(self) -> None:
        """Forget every sample (and the clock)."""
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        for inp in self._inputs.values():
            inp.buffer.prune_before(math.inf)
            inp.last_stamp = -math.inf
            inp.future, inp.future_at = 0.0, -math.inf
            inp.notes.clear()
            if inp.last_present is not None:
                inp.last_present[:] = -np.inf
        self._last_now = None

    def _accept_stamp(self, inp: _Input, stamp: float) -> bool:
        if not math.isfinite(stamp):
            inp.note("samples with a non-finite stamp dropped", f"stamp {stamp!r}")
            return False
        if self._last_now is not None and stamp < self._last_now - inp.retention_s:
            inp.note("samples older than the retention window dropped",
                     f"stamp {stamp:.3f}, {self._last_now - stamp:.2f} s before the last assemble")
            return False
        return True

    def add_image(self, camera: str, stamp: float, rgb: Frame) -> None:
        """A frame of ``camera`` stamped ``stamp`` (header time): (H, W, 3) uint8 RGB, kept by
        reference (do not modify it afterwards), or a callable that decodes it."""
        inp = self._cameras.get(camera)
        if inp is None:
            raise ValueError(f"unknown camera {camera!r} (cameras: {_fmt_names(self._cameras)})")
        stamp = float(stamp)
        if not callable(rgb):
            problem = _image_problem(rgb)
            if problem:
                with self._lock:
                    inp.note("bad frames dropped", problem)
                return
        with self._lock:
            if not self._accept_stamp(inp, stamp):
                return
            if inp.buffer.insert(stamp, rgb) < 0:
                inp.note("duplicate stamps dropped", f"stamp {stamp:.3f}")
                return
            inp.last_stamp = max(inp.last_stamp, stamp)

    def add_joints(self, topic: str, stamp: float, names: Sequence[str],
                   positions: Sequence[float]) -> None:
        """A JointState message on ``topic``: its joints are gathered by name (names this input
        does not read are ignored; joints absent from the message are recorded as absent)."""
        inp = self._joints.get(topic)
        if inp is None:
            raise ValueError(f"unknown joint input {topic!r} (inputs: {_fmt_names(self._joints)})")
        stamp = float(stamp)
        names = list(names)
        if len(names) != len(positions):
            with self._lock:
                inp.note("malformed messages dropped",
                         f"{len(names)} names but {len(positions)} positions")
            return
        column = {j: k for k, j in enumerate(inp.joints)}
        values = np.full(len(inp.joints), np.nan)
        present = np.zeros(len(inp.joints), dtype=bool)
        for name, value in zip(names, positions):
            k = column.get(name)
            if k is not None:
                values[k] = float(value)
                present[k] = True
        if not present.any():
            return  # nothing this input reads (e.g. another driver's joints on /joint_states)
        with self._lock:
            if not self._accept_stamp(inp, stamp):
                return
            i = inp.buffer.find(stamp)
            if i >= 0:  # same stamp: merge the joints not yet there, else a duplicate
                old_values, old_present = inp.buffer.values[i]
                new = present & ~old_present
                if not new.any():
                    inp.note("duplicate stamps dropped", f"stamp {stamp:.3f}")
                    return
                inp.buffer.values[i] = (np.where(new, values, old_values), old_present | new)
            else:
                inp.buffer.insert(stamp, (values, present))
            inp.last_stamp = max(inp.last_stamp, stamp)
            np.maximum(inp.last_present, np.where(present, stamp, -np.inf),
                       out=inp.last_present)

    # ----------------------------------------------------------------------------------------
    # assembly

    def assemble(self, now: float, instruction: str = "") -> AssemblyResult:
        """The newest time-aligned observation at ``now``, or None and the reason."""
        now = float(now)
        with self._lock:
            notes = self._flush_notes()
            if self._last_now is not None and now < self._last_now - self.clock_jump_s:
                back = self._last_now - now
                self._reset_locked()
                self._last_now = now
                return self._fail(
                    f"clock jumped back {back:.2f} s (now {now:.3f}): buffers cleared, waiting "
                    f"for new samples", now, notes)
            if self._last_now is not None and now < self._last_now:
                now = self._last_now  # a small step back: no time passes
            self._last_now = now
            reason = self._drop_future(now) or self._prune_and_check(now)
            if reason:
                return self._fail(reason, now, notes)
            reason, obs = self._align(now, instruction)
            return AssemblyResult(obs, reason, self._ages(now), notes)

    def _ages(self, now: float) -> dict[str, float]:
        return {name: now - inp.last_stamp for name, inp in self._inputs.items()}

    def _fail(self, reason: str, now: float, notes: tuple[str, ...]) -> AssemblyResult:
        return AssemblyResult(None, reason, self._ages(now), notes)

    def _flush_notes(self) -> tuple[str, ...]:
        out = []
        for inp in self._inputs.values():
            for kind, (count, detail) in inp.notes.items():
                out.append(f"{inp.label}: {count} {kind} (last: {detail})")
            inp.notes.clear()
        return tuple(out)

    def _drop_future(self, now: float) -> str:
        reason = ""
        for inp in self._inputs.values():
            dropped = inp.buffer.drop_after(now + self.future_tolerance_s)
            if dropped:
                ahead = max(dropped) - now
                inp.future, inp.future_at = ahead, now
                inp.last_stamp = inp.buffer.stamps[-1] if len(inp.buffer) else -math.inf
                if inp.last_present is not None:
                    self._recompute_present(inp)
                reason = reason or (
                    f"{inp.label}: sample stamped {ahead:.2f} s in the future (stamp "
                    f"{max(dropped):.3f}, now {now:.3f}): clock jump? check time sync between "
                    f"machines and use_sim_time")
        return reason

    @staticmethod
    def _recompute_present(inp: _Input) -> None:
        inp.last_present[:] = -np.inf
        for stamp, (_, present) in zip(inp.buffer.stamps, inp.buffer.values):
            inp.last_present[present] = stamp

    def _future_hint(self, inp: _Input, now: float) -> str:
        if now - inp.future_at <= self.history_s:
            return (f" (recent samples were stamped {inp.future:.2f} s in the future and "
                    f"dropped: clock jump?)")
        return ""

    def _prune_and_check(self, now: float) -> str:
        for inp in self._inputs.values():
            inp.buffer.prune_before(now - inp.retention_s)
        for inp in self._cameras.values():
            if inp.last_stamp == -math.inf:
                return f"{inp.label} never received{self._future_hint(inp, now)}"
        for inp in self._joints.values():
            if inp.last_stamp == -math.inf:
                return (f"{inp.label} never received (joints {_fmt_names(inp.joints)})"
                        f"{self._future_hint(inp, now)}")
            missing = [j for j, t in zip(inp.joints, inp.last_present) if t == -np.inf]
            if missing:
                return (f"{inp.label}: joints {_fmt_names(missing)} never received (messages "
                        f"on the topic do not contain them)")
        for inp in self._cameras.values():
            age = now - inp.last_stamp
            if age > inp.max_age_s:
                return (f"{inp.label} stale: last frame {age:.2f} s old (budget "
                        f"{inp.max_age_s:.2f} s){self._future_hint(inp, now)}")
        for inp in self._joints.values():
            age = now - inp.last_stamp
            if age > inp.max_age_s:
                return (f"{inp.label} stale: last message {age:.2f} s old (budget "
                        f"{inp.max_age_s:.2f} s){self._future_hint(inp, now)}")
            ages = now - inp.last_present
            stale = [j for j, a in zip(inp.joints, ages) if a > inp.max_age_s]
            if stale:
                return (f"{inp.label}: joints {_fmt_names(stale)} stale: last value "
                        f"{ages.max():.2f} s old (budget {inp.max_age_s:.2f} s); recent "
                        f"messages do not contain them")
            values, present = inp.buffer.values[-1]
            bad = present & ~np.isfinite(values)
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                return (f"{inp.label}: non-finite position for {inp.joints[k]!r} "
                        f"({values[k]}) in the newest message (stamp "
                        f"{inp.buffer.stamps[-1]:.3f})")
        return ""

    def _align(self, now: float, instruction: str) -> tuple[str, Observation | None]:
        ref = self._inputs[self.reference]
        tables = {topic: _JointTable(inp) for topic, inp in self._joints.items()}
        first_reason = ""
        for t in reversed(ref.buffer.stamps):
            if now - t > ref.max_age_s:
                break
            reason, obs = self._try(t, now, tables, instruction)
            if obs is not None:
                return "", obs
            first_reason = first_reason or reason
        if not first_reason:
            first_reason = (f"{ref.label}: no sample within its budget "
                            f"{ref.max_age_s:.2f} s")
        return first_reason, None

    def _try(self, t: float, now: float, tables: dict[str, _JointTable],
             instruction: str) -> tuple[str, Observation | None]:
        at = f"the reference time {t:.3f} ({self._inputs[self.reference].label})"
        images: dict[str, np.ndarray] = {}
        stamps: dict[str, float] = {}
        for name, inp in self._cameras.items():
            buf = inp.buffer
            if len(buf) == 0:
                return f"{inp.label}: no buffered frame", None
            i = _nearest(buf.stamps, t)
            gap = abs(buf.stamps[i] - t)
            if gap > self.slop_s:
                return (f"{inp.label}: no frame within slop {self.slop_s:.3f} s of {at}: "
                        f"nearest {gap:.3f} s away"), None
            age = now - buf.stamps[i]
            if age > inp.max_age_s:
                return (f"{inp.label} stale at {at}: frame {age:.2f} s old (budget "
                        f"{inp.max_age_s:.2f} s)"), None
            frame = buf.values[i]
            if callable(frame):
                try:
                    frame = frame()
                except Exception as exc:  # a decoder failing on one frame must not crash
                    return (f"{inp.label}: frame {buf.stamps[i]:.3f} could not be decoded: "
                            f"{exc}"), None
                problem = _image_problem(frame)
                if problem:
                    return f"{inp.label}: decoded frame {buf.stamps[i]:.3f} {problem}", None
            images[name] = frame
            stamps[name] = buf.stamps[i]
        values: dict[str, np.ndarray] = {}
        for topic, table in tables.items():
            reason, vals, value_time, used = table.at(t, self.slop_s)
            if reason:
                return f"{table.inp.label}: {reason} (aligning to {at})", None
            age = now - value_time
            if age > table.inp.max_age_s:
                return (f"{table.inp.label} stale at {at}: joint values {age:.2f} s old "
                        f"(budget {table.inp.max_age_s:.2f} s); the reference input lags more "
                        f"than this input's budget"), None
            values[topic] = vals
            stamps[topic] = used
        state = np.array([values[topic][k] for topic, k in self._state_index])
        history = None
        if self.state_history_s:
            past = {topic: table.history(t, self.state_history_s) for topic, table in
                    tables.items()}
            history = np.array([past[topic][:, k] for topic, k in self._state_index]).T
        return "", Observation(t, images, state, stamps, instruction, history)


class _JointTable:
    """A joint input's buffer as arrays, for per-joint lookups at candidate times."""

    def __init__(self, inp: _Input):
        self.inp = inp
        j = len(inp.joints)
        self.stamps = np.array(inp.buffer.stamps, dtype=np.float64)  # (N,)
        self.values = np.array([v for v, _ in inp.buffer.values]).reshape(-1, j)  # (N, J)
        self.present = np.array([p for _, p in inp.buffer.values], dtype=bool).reshape(-1, j)
        # every buffered message carried every joint (one driver per topic: the usual case), so
        # every joint picks the same rows and one lookup serves them all
        self.dense = bool(self.present.all())
        self.finite = bool(np.isfinite(self.values).all())

    def _pick(self, s: np.ndarray, t: float, slop: float) -> tuple[list[int], float] | float:
        """Rows of the sorted stamps ``s`` that give the value at ``t`` and the time that value
        counts as: the sample at t, the two that bracket t within slop (interpolated), else the
        nearest within slop (ties: the newer). Nothing within slop: the nearest distance."""
        hi = int(np.searchsorted(s, t, side="right"))  # s[hi-1] <= t < s[hi]
        lo = hi - 1
        if lo >= 0 and s[lo] == t:
            return [lo], t
        if lo >= 0 and hi < len(s) and t - s[lo] <= slop and s[hi] - t <= slop:
            return [lo, hi], t
        near = [i for i in (lo, hi) if 0 <= i < len(s)]
        best = min(near, key=lambda i: (abs(s[i] - t), -s[i]))
        if abs(s[best] - t) > slop:
            return float(abs(s[best] - t))
        return [best], float(s[best])

    def _mix(self, picks: list[int], t: float, v: np.ndarray) -> np.ndarray:
        """Values ``v`` of the picked rows -> the value at ``t`` (linear between two rows)."""
        if len(picks) == 2:
            s0, s1 = self.stamps[picks[0]], self.stamps[picks[1]]
            a = (t - s0) / (s1 - s0)
            return v[0] + a * (v[1] - v[0])
        return v[0]

    def at(self, t: float, slop: float) -> tuple[str, np.ndarray | None, float, float]:
        """(reason, (J,) values at t, time of the oldest value, newest message stamp used)."""
        if self.dense and len(self.stamps):
            picked = self._pick(self.stamps, t, slop)
            if not isinstance(picked, float):
                picks, used = picked
                v = self.values[picks]
                if np.isfinite(v).all():
                    return "", self._mix(picks, t, v), used, float(self.stamps[picks[-1]])
            # not within slop, or non-finite: the per-joint walk names the joint
        out = np.empty(len(self.inp.joints))
        oldest, newest = math.inf, -math.inf
        for k, joint in enumerate(self.inp.joints):
            rows = np.flatnonzero(self.present[:, k])
            s = self.stamps[rows]
            if len(s) == 0:
                return f"joint {joint!r} has no buffered sample", None, 0.0, 0.0
            picked = self._pick(s, t, slop)
            if isinstance(picked, float):
                return (f"joint {joint!r} has no sample within slop {slop:.3f} s: nearest "
                        f"{picked:.3f} s away"), None, 0.0, 0.0
            picks, used = [int(rows[i]) for i in picked[0]], picked[1]
            v = self.values[picks, k]
            if not np.all(np.isfinite(v)):
                bad = v[~np.isfinite(v)][0]
                stamp = self.stamps[picks[int(np.argmin(np.isfinite(v)))]]
                return (f"non-finite position for {joint!r} ({bad}) in the message stamped "
                        f"{stamp:.3f}"), None, 0.0, 0.0
            out[k] = self._mix(picks, t, v)
            oldest = min(oldest, used)
            newest = max(newest, float(self.stamps[picks[-1]]))
        return "", out, oldest, newest


    def history(self, t: float, lags: Sequence[float]) -> np.ndarray:
        """(K, J) values at t - L for each lag: linear between the finite samples around
        that time, the oldest finite sample when the buffer does not reach back that far."""
        out = np.empty((len(lags), len(self.inp.joints)))
        times = t - np.asarray(lags, dtype=np.float64)
        for k in range(len(self.inp.joints)):
            if self.dense and self.finite:
                out[:, k] = np.interp(times, self.stamps, self.values[:, k])
                continue
            rows = self.present[:, k] & np.isfinite(self.values[:, k])
            # at() found a finite value at t, so rows is never empty here
            out[:, k] = np.interp(times, self.stamps[rows], self.values[rows, k])
        return out


def _nearest(stamps: list[float], t: float) -> int:
    """Index of the stamp nearest to t (ties: the newer); stamps sorted and non-empty."""
    i = bisect.bisect_left(stamps, t)
    if i == 0:
        return 0
    if i == len(stamps):
        return i - 1
    return i if stamps[i] - t <= t - stamps[i - 1] else i - 1


def _image_problem(rgb) -> str:
    if not isinstance(rgb, np.ndarray):
        return f"is a {type(rgb).__name__}, expected an (H, W, 3) uint8 array"
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        return f"has shape {rgb.shape} {rgb.dtype}, expected (H, W, 3) uint8"
    return ""
