"""Who drives the robot: the TELEOP / POLICY / HOLD mode state machine.

Modes (the faster_msgs/PolicyStatus MODE_* values):

* ``TELEOP``: the operator's commands go to the controllers; the policy runs in shadow.
* ``POLICY``: the chunk executor's commands go to the controllers.
* ``HOLD``: the last command is held (a base twist ramps to zero); the policy runs in shadow.

Transitions, each with a reason, a timestamp and who asked (:class:`Transition`):

* by request (the SetMode service): TELEOP and HOLD are always granted (taking control back is
  never refused); POLICY is refused while the policy produced no chunk for ``policy_timeout_s``
  or, with ``require_deadman``, while the deadman is not pressed;
* by the deadman / pedal (std_msgs/Bool): a press (rising edge) asks for POLICY like a request;
  a release (falling edge), or ``deadman_timeout_s`` of silence while pressed, leaves POLICY at
  once (a pedal that streams "not pressed" does not block a POLICY request, unless
  ``require_deadman``);
* by the operator: teleop input that moves while in POLICY or HOLD switches to TELEOP at once
  (:meth:`ModeManager.operator_moved`; what counts as moving is decided by the teleop input,
  faster_ros.control.teleop);
* by loss of inputs (a watchdog): when neither teleop input (``teleop_timeout_s``) nor policy
  chunks (``policy_timeout_s``) arrived recently, after at least one of them was seen, -> HOLD;
  and back when the input of the mode it left returns (policy chunks again after POLICY, teleop
  input after TELEOP; never from TELEOP to POLICY). A HOLD that was asked for is left only by a
  request, a deadman press or the operator moving.

Leaving POLICY by deadman or loss goes to TELEOP when teleop input is live, else to HOLD.

Pure state machine: times are passed in (seconds of the node's clock). No rclpy here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

from faster_ros.embodiment import HandoffSpec


class Mode(str, Enum):
    TELEOP = "TELEOP"
    POLICY = "POLICY"
    HOLD = "HOLD"


MODE_CHOICES = tuple(m.value for m in Mode)


@dataclass(frozen=True)
class Transition:
    """One mode change. ``from_mode`` is None for the initial mode at start."""

    stamp: float
    from_mode: Mode | None
    to_mode: Mode
    reason: str
    requested_by: str


class ModeManager:
    """The mode state machine of one runtime (see the module docstring for the rules).

    Feed it :meth:`teleop_seen`, :meth:`policy_seen`, :meth:`deadman`, :meth:`operator_moved`,
    :meth:`request` and call :meth:`update` at every control tick (timeouts). New transitions
    are queued; :meth:`drain` returns them once each (for publishing and logging).
    """

    def __init__(self, spec: HandoffSpec, now: float, initial: Mode | str | None = None,
                 history: int = 256):
        self.spec = spec
        initial = initial or spec.initial_mode
        try:
            self._mode = Mode(str(initial.value if isinstance(initial, Mode) else initial).upper())
        except ValueError:
            raise ValueError(f"initial mode {initial!r}: expected one of "
                             f"{', '.join(MODE_CHOICES)}") from None
        self._reason = "initial mode"
        self._since = float(now)
        self._teleop_last: float | None = None
        self._policy_last: float | None = None
        self._deadman_pressed = False
        self._deadman_last: float | None = None
        self._loss_from: Mode | None = None  # mode left for HOLD by the watchdog
        self._pending: list[Transition] = []
        self.history: deque[Transition] = deque(maxlen=history)
        self._record(Transition(float(now), None, self._mode, "initial mode", "startup"))

    # ------------------------------------------------------------------------------ state

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def reason(self) -> str:
        """Why the runtime is in the current mode (the last transition's reason)."""
        return self._reason

    @property
    def since(self) -> float:
        return self._since

    def teleop_live(self, now: float) -> bool:
        return self._fresh(self._teleop_last, now, self.spec.teleop_timeout_s)

    def policy_live(self, now: float) -> bool:
        return self._fresh(self._policy_last, now, self.spec.policy_timeout_s)

    def deadman_pressed(self, now: float) -> bool:
        """Pressed, and heard from within ``deadman_timeout_s``."""
        return self._deadman_pressed and self._fresh(self._deadman_last, now,
                                                     self.spec.deadman_timeout_s)

    def drain(self) -> list[Transition]:
        """Transitions since the last call, oldest first."""
        out, self._pending = self._pending, []
        return out

    # ------------------------------------------------------------------------------ inputs

    def teleop_seen(self, now: float) -> None:
        """A valid operator command arrived."""
        self._teleop_last = float(now)
        if self._mode == Mode.HOLD and self._loss_from == Mode.TELEOP:
            self._switch(Mode.TELEOP, "teleop input back after the loss of every input", now,
                         "watchdog")

    def policy_seen(self, now: float) -> None:
        """The policy published a chunk (executed or shadow)."""
        self._policy_last = float(now)
        if (self._mode == Mode.HOLD and self._loss_from == Mode.POLICY
                and not self._policy_refusal(now)):
            self._switch(Mode.POLICY, "policy input back after the loss of every input", now,
                         "watchdog")

    def request(self, mode: Mode | str, reason: str, now: float,
                requested_by: str = "operator") -> tuple[bool, str]:
        """Ask for ``mode``; returns (accepted, message). Unknown modes are refused."""
        try:
            target = Mode(mode)
        except ValueError:
            known = ", ".join(m.value for m in Mode)
            return False, (f"unknown mode {mode!r} (one of: {known}; the policy runs in shadow "
                           f"in TELEOP and HOLD)")
        reason = reason.strip() or "requested"
        if target == self._mode:
            return True, f"already in {target.value}"
        if target == Mode.POLICY:
            refusal = self._policy_refusal(now)
            if refusal:
                return False, refusal
        self._switch(target, reason, now, requested_by)
        return True, f"switched to {target.value}: {reason}"

    def deadman(self, pressed: bool, now: float) -> tuple[bool, str]:
        """A deadman / pedal sample. Returns (switched, message) for logging."""
        was = self.deadman_pressed(now)
        self._deadman_pressed = bool(pressed)
        self._deadman_last = float(now)
        if pressed and not was and self._mode != Mode.POLICY:
            refusal = self._policy_refusal(now)
            if refusal:
                return False, f"deadman pressed, POLICY refused: {refusal}"
            self._switch(Mode.POLICY, "deadman pressed", now, "deadman")
            return True, "deadman pressed"
        if not pressed and was and self._mode == Mode.POLICY:  # the release, not a stream
            self._leave_policy("deadman released", now, "deadman")  # of "not pressed"
            return True, "deadman released"
        return False, ""

    def operator_moved(self, what: str, now: float) -> bool:
        """Teleop input moved (``what`` says which dimension by how much). In POLICY or HOLD
        the operator takes over at once. Returns whether the mode changed."""
        self.teleop_seen(now)
        if self._mode == Mode.TELEOP:
            return False
        self._switch(Mode.TELEOP, f"operator moved: {what}", now, "operator")
        return True

    def update(self, now: float) -> None:
        """Timeouts: deadman silence, loss of every input."""
        if self._mode == Mode.POLICY and self._deadman_pressed and not self._fresh(
                self._deadman_last, now, self.spec.deadman_timeout_s):
            self._deadman_pressed = False
            self._leave_policy(f"deadman silent for more than {self.spec.deadman_timeout_s} s",
                               now, "deadman")
        if (self._mode == Mode.POLICY and self.spec.require_deadman
                and not self.deadman_pressed(now)):
            self._leave_policy("deadman required and not pressed", now, "deadman")
        seen = self._teleop_last is not None or self._policy_last is not None
        if (self._mode != Mode.HOLD and seen and not self.teleop_live(now)
                and not self.policy_live(now)):
            left = self._mode
            self._switch(Mode.HOLD, self._loss_text(now), now, "watchdog")
            self._loss_from = left

    # ------------------------------------------------------------------------------ internals

    @staticmethod
    def _fresh(last: float | None, now: float, timeout: float) -> bool:
        return last is not None and now - last <= timeout

    def _policy_refusal(self, now: float) -> str:
        if self.spec.require_deadman and not self.deadman_pressed(now):
            return "the deadman must be pressed to give control to the policy"
        if not self.policy_live(now):
            age = ("never" if self._policy_last is None
                   else f"{now - self._policy_last:.2f} s ago")
            return (f"the policy is not producing chunks (last one {age}, timeout "
                    f"{self.spec.policy_timeout_s} s)")
        return ""

    def _leave_policy(self, reason: str, now: float, by: str) -> None:
        target = Mode.TELEOP if self.teleop_live(now) else Mode.HOLD
        self._switch(target, reason, now, by)

    def _loss_text(self, now: float) -> str:
        def age(last: float | None) -> str:
            return "never received" if last is None else f"silent for {now - last:.2f} s"

        return (f"watchdog: lost every input: teleop {age(self._teleop_last)} (timeout "
                f"{self.spec.teleop_timeout_s} s), policy {age(self._policy_last)} (timeout "
                f"{self.spec.policy_timeout_s} s)")

    def _switch(self, target: Mode, reason: str, now: float, by: str) -> None:
        if target == self._mode:
            return
        self._loss_from = None
        self._record(Transition(float(now), self._mode, target, reason, by))

    def _record(self, t: Transition) -> None:
        self._mode, self._reason, self._since = t.to_mode, t.reason, t.stamp
        self._pending.append(t)
        self.history.append(t)
