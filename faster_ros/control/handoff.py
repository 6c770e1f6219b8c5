"""What reaches the controllers at every tick, by mode: the operator's command, the policy's, or a
hold, with bumpless switches in both directions.

:class:`HandoffController` owns the :class:`~faster_ros.control.modes.ModeManager`, the operator's
:class:`~faster_ros.control.teleop.TeleopState` and the :class:`ChunkExecutor`, and remembers the
last command it returned (what the controllers have now). On a switch:

* -> POLICY: the chunk executor starts from that last command (:meth:`ChunkExecutor.start_from`)
  and holds it until the first chunk, which is cross-faded in over ``handoff.blend_time_s``
  (seam blending, faster_ros.control.blending) and gated as usual;
* POLICY -> TELEOP: the chunk executor is reset (its trajectory is dropped: nothing of the policy
  is commanded any more) and the command moves from where it is to the operator's at
  ``catchup_rate_scale * max_rate``, never more than the seam bound per tick, then follows the
  operator unchanged (still within ``max_rate`` and the limits);
* -> HOLD: the last command is held; velocity dimensions (a base twist) ramp to zero at their
  acceleration limit.

Chunks are executed only in POLICY; :meth:`submit` refuses them otherwise, with the reason.
Not thread-safe: the node calls it from one callback group. No rclpy here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from faster_ros.control.chunk import Chunk, GateResult
from faster_ros.control.executor import ChunkExecutor, Command
from faster_ros.control.modes import Mode, ModeManager, Transition
from faster_ros.control.teleop import TeleopState, limit_step
from faster_ros.embodiment import Embodiment

HANDOVER_HORIZON_S = 3.0  # how much of the policy's plan is kept for the first teleop command


class HandoffController:
    """TELEOP / POLICY / HOLD arbitration for one embodiment (see the module docstring)."""

    def __init__(self, emb: Embodiment, now: float, executor: ChunkExecutor | None = None,
                 initial: Mode | str | None = None, lead: np.ndarray | None = None):
        """``lead`` (D,): how far ahead of ``now`` each dimension's command is scheduled (a
        trajectory controller's one-point lead; 0, the default, for streamed setpoints)."""
        self.emb = emb
        self._lead = np.zeros(emb.action_dim) if lead is None else np.asarray(lead, float)
        self.spec = emb.handoff
        self.executor = executor or ChunkExecutor(emb)
        self.teleop = TeleopState(emb)
        self.modes = ModeManager(self.spec, now, initial)
        self._is_velocity = emb.is_velocity
        self._max_rate = emb.max_rate
        self._max_step = emb.seam_bound
        self._measured: np.ndarray | None = None
        self._last: np.ndarray | None = None  # (D,) last command returned by command()
        self._last_time: float | None = None
        self._catching_up = False
        self._handover: tuple[np.ndarray, np.ndarray] | None = None  # the plan left behind
        self._out: list[Transition] = []
        self._apply(now)

    # ------------------------------------------------------------------------------ state

    @property
    def mode(self) -> Mode:
        return self.modes.mode

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._last is None else self._last.copy()

    @property
    def catching_up(self) -> bool:
        return self._catching_up

    def drain(self) -> list[Transition]:
        """Transitions (with their effects applied) since the last call, oldest first."""
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------------------ inputs

    def set_measured(self, positions: np.ndarray, now: float) -> None:
        """(D,) measured positions in action order (velocity dimensions ignored)."""
        p = np.where(self._is_velocity, 0.0, np.asarray(positions, dtype=np.float64))
        if np.isfinite(p).all():
            self._measured = np.clip(p, self.emb.lower, self.emb.upper)
        self.executor.set_measured(positions, now)

    def teleop_input(self, values: Mapping[int, float], now: float) -> list[str]:
        """An operator sample ({action index: value}); returns the problems found in it."""
        problems, moved = self.teleop.update(values, now)
        if any(np.isfinite(v) for v in values.values()):  # something valid arrived
            if moved and self.modes.mode != Mode.TELEOP:
                self.modes.operator_moved(moved, now)
            else:
                self.modes.teleop_seen(now)
        self._apply(now)
        return problems

    def deadman(self, pressed: bool, now: float) -> str:
        _, message = self.modes.deadman(pressed, now)
        self._apply(now)
        return message

    def request(self, mode: Mode | str, reason: str, now: float,
                requested_by: str = "operator") -> tuple[bool, str]:
        result = self.modes.request(mode, reason, now, requested_by)
        self._apply(now)
        return result

    def reanchor(self, reason: str, now: float) -> None:
        """The robot was moved outside the stack (e.g. a simulated scene reset): the last
        command and the measurement are forgotten, nothing is commanded until a new measurement
        (HOLD, TELEOP) or the first chunk (POLICY, which then starts from the measured position:
        :meth:`ChunkExecutor.reanchor`). Without it every chunk, computed from where the robot
        now is, would be refused for its seam jump from the stale command."""
        self._last = self._last_time = self._measured = None
        self._handover = None
        self.executor.reanchor(reason, now)

    def policy_seen(self, now: float) -> None:
        """The policy published a chunk (on the live or the shadow topic)."""
        self.modes.policy_seen(now)

    def submit(self, chunk: Chunk, now: float) -> GateResult:
        """Execute ``chunk`` if in POLICY; otherwise it is refused (nothing of it is commanded)."""
        self.modes.policy_seen(now)
        self.update(now)
        if self.modes.mode != Mode.POLICY:
            return GateResult.reject(f"mode {self.modes.mode.value}: policy chunks are not "
                                     f"executed ({self.modes.reason})")
        return self.executor.submit(chunk, now)

    def update(self, now: float) -> None:
        """Timeouts (deadman, loss of inputs); called by :meth:`command` at every tick."""
        self.modes.update(now)
        self._apply(now)

    # ------------------------------------------------------------------------------ output

    def command(self, now: float) -> Command | None:
        """The command for the controllers at ``now``, or None when nothing is to be published
        (no command yet and nothing to start from: the robot's own controller holds)."""
        self.update(now)
        mode = self.modes.mode
        if mode != Mode.POLICY:
            self._resolve_handover(now)
        if mode == Mode.POLICY:
            cmd = self.executor.command(now)
            if not cmd.active:
                return None
        else:
            cmd = self._teleop_command(now) if mode == Mode.TELEOP else self._hold_command(now)
            if cmd is None:
                return None
        self._last, self._last_time = cmd.positions.copy(), now
        return cmd

    def _start(self, now: float) -> np.ndarray | None:
        """Where a command starts: the last one, else the measured position."""
        return self._last if self._last is not None else self._measured

    def _elapsed(self, now: float) -> float:
        return self.emb.control.dt if self._last_time is None else max(now - self._last_time, 0.0)

    def _teleop_command(self, now: float) -> Command | None:
        fresh = self.teleop.fresh(now)
        base = self._last if self._last is not None else (
            self._measured if fresh.any() else None)
        if base is None:
            return None
        target = self.teleop.target(now, base)
        scale = self.spec.catchup_rate_scale if self._catching_up else 1.0
        elapsed = self._elapsed(now)
        new = limit_step(base, target, self._max_rate * scale, elapsed, self._max_step)
        if self._catching_up and np.allclose(new, target, rtol=0.0, atol=1e-9):
            self._catching_up = False  # caught up: from now on the operator's command as is
        velocities = np.zeros_like(new)
        if elapsed > 0:
            velocities = np.where(self._is_velocity, 0.0, (new - base) / elapsed)
        if not fresh.any():
            reason = "teleop: no operator input, holding the last command"
        else:
            reason = "teleop: catching up with the operator" if self._catching_up else "teleop"
        return Command(new, velocities, not fresh.any(), reason)

    def _hold_command(self, now: float) -> Command | None:
        base = self._start(now)
        if base is None:
            return None
        target = np.where(self._is_velocity, 0.0, base)
        new = limit_step(base, target, self._max_rate, self._elapsed(now), self._max_step)
        return Command(new, np.zeros_like(new), True, f"hold: {self.modes.reason}")

    # ------------------------------------------------------------------------------ switches

    def _resolve_handover(self, now: float) -> None:
        """After POLICY, the first command starts the dimensions sent ahead (to a trajectory
        controller) from the policy's plan at ``now + lead``: such a controller goes on along
        the published trajectory until the next command reaches it, so that is where it is, not
        the last tick's value. Streamed dimensions have exactly the last value sent."""
        if self._handover is None:
            return
        times, values = self._handover
        self._handover = None
        ahead = self._lead > 0
        at = now + self._lead
        plan = np.array([np.interp(at[j], times, values[:, j]) for j in range(len(at))])
        self._last = np.where(ahead, plan, self._last)

    def _apply(self, now: float) -> None:
        for t in self.modes.drain():
            if t.from_mode == Mode.POLICY:
                if (self._last is not None and (self._lead > 0).any()
                        and self.executor.status.active):
                    times = now + np.linspace(0.0, HANDOVER_HORIZON_S, 301)  # (K,)
                    self._handover = (times, self.executor.commanded_at(times))  # (K, D)
                self.executor.reset()  # the policy's trajectory is dropped
                if self._measured is not None:
                    self.executor.set_measured(self._measured, now)
            if t.to_mode == Mode.POLICY and t.from_mode is not None:
                self._resolve_handover(now)
                start = self._start(now)
                if start is not None:  # from TELEOP the robot moves: its lag is blended out
                    self.executor.start_from(start, now, self.spec.blend_time_s,
                                             f"handoff from {t.from_mode.value}: holding the "
                                             f"current command until the first chunk",
                                             check_seam=t.from_mode != Mode.TELEOP)
            if t.to_mode == Mode.TELEOP:
                self._catching_up = True
            else:
                self.teleop.set_reference()
            self._out.append(t)
