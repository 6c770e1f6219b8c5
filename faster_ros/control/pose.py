"""End-effector pose actions: from the policy's action space to pose commands, gated and executed.

A policy acts on an end effector in its embodiment's representation (faster_ros.embodiment
``EndEffector``: absolute or delta position, axis-angle / Euler / quaternion / 6-D rotation). The
executor works in a *command space* where each end effector is seven numbers, position (x, y, z)
in metres and a unit quaternion (w, x, y, z), and every other dimension is unchanged:

* :class:`CommandSpace` maps a policy chunk there. Rotations go through faster_ros.rotations
  (transforms3d). Delta actions are per-step motions: ``p_k = p_(k-1) + dp_k``,
  ``q_k = dq_k * q_(k-1)`` (``delta_frame`` base) or ``q_(k-1) * dq_k`` (tool). They are
  accumulated from the *commanded* pose (not the measured one, which lags: the same reason the
  seam blend starts from the command) one step before the first step that will be executed:
  the steps that inference latency made late are dropped (as for any chunk), and their motion
  with them, instead of being caught up in one jump. Quaternions are kept in one hemisphere
  along the chunk and with the current command, so the published stream never flips sign.
* :class:`PoseSafetyGate` checks what the joint gate checks, with rotation-aware measures: the
  workspace box (the position dims' limits: small overshoots clipped, far ones rejected), the
  translational speed ``|dp|/dt`` and angular speed ``angle(q_k, q_k+1)/dt`` against
  ``max_linear_speed`` / ``max_angular_speed`` (time-scaled or rejected), the seam jump in
  translation (m) and rotation (rad), and unit norm of every quaternion.
* :class:`PoseChunkExecutor` is the :class:`~faster_ros.control.executor.ChunkExecutor` for such
  embodiments: it takes policy-space chunks, converts them, then anchors, blends (slerp on the
  quaternions), gates and interpolates (slerp) like any chunk. Its ``embodiment`` is the command
  space (outputs, limits, measured state); ``policy_embodiment`` is the config's.

No rclpy here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from faster_ros import rotations as rot
from faster_ros.control.chunk import Chunk, GateResult
from faster_ros.control.executor import ChunkExecutor
from faster_ros.control.safety import MAX_LISTED, SafetyGate
from faster_ros.control.timing import late_steps
from faster_ros.embodiment import Dimension, Embodiment, EndEffector, OutputGroup

UNIT_TOLERANCE = 1e-6  # |norm - 1| allowed for a commanded quaternion


@dataclass(frozen=True)
class PoseSlot:
    """Where one end effector's pose sits in a command vector, and its motion limits."""

    name: str
    position: tuple[int, int, int]  # command indices of x, y, z (m)
    quaternion: tuple[int, int, int, int]  # command indices of w, x, y, z
    max_linear_speed: float  # m/s
    max_angular_speed: float  # rad/s
    max_seam_translation: float  # m
    max_seam_rotation: float  # rad
    end_effector: EndEffector

    @property
    def indices(self) -> tuple[int, ...]:
        return self.position + self.quaternion


def command_dimension_names(ee: EndEffector) -> tuple[str, ...]:
    return tuple(f"{ee.name}_{s}" for s in ("x", "y", "z", "qw", "qx", "qy", "qz"))


class CommandSpace:
    """The command space of an embodiment with end effectors (see the module docstring)."""

    def __init__(self, emb: Embodiment):
        self.policy = emb
        pose_of = {ee.position_indices[0]: ee for ee in emb.end_effectors}
        in_pose = {i for ee in emb.end_effectors for i in ee.pose_indices}
        dims: list[Dimension] = []
        self.passthrough: list[tuple[int, int]] = []  # (policy index, command index)
        slots: list[PoseSlot] = []
        for i, d in enumerate(emb.dimensions):
            if i in pose_of:
                ee = pose_of[i]
                start = len(dims)
                names = command_dimension_names(ee)
                for n, lo, hi in zip(names[:3], ee.workspace_lower, ee.workspace_upper):
                    dims.append(Dimension(n, "m", "position", lo, hi, ee.max_linear_speed,
                                          None, ee.max_seam_translation))
                for n in names[3:]:
                    dims.append(Dimension(n, "1", "position", -1.0, 1.0, ee.max_angular_speed,
                                          None, ee.max_seam_rotation))
                slots.append(PoseSlot(ee.name, tuple(range(start, start + 3)),
                                      tuple(range(start + 3, start + 7)), ee.max_linear_speed,
                                      ee.max_angular_speed, ee.max_seam_translation,
                                      ee.max_seam_rotation, ee))
            elif i not in in_pose:
                self.passthrough.append((i, len(dims)))
                dims.append(d)
        self.slots = tuple(slots)
        index = {p: c for p, c in self.passthrough}
        outputs = []
        for g in emb.outputs:
            if g.end_effector is not None:
                slot = next(s for s in slots if s.name == g.end_effector)
                names = tuple(dims[j].name for j in slot.indices)
                outputs.append(replace(g, dims=names, indices=slot.indices, joints=names))
            else:
                outputs.append(replace(g, indices=tuple(index[i] for i in g.indices)))
        changes = {"dimensions": tuple(dims), "outputs": tuple(outputs), "end_effectors": (),
                   "tokenizer": replace(emb.tokenizer, patch_groups=())}
        handoff = getattr(emb, "handoff", None)
        if handoff is not None:  # teleop drives the passthrough dims only (no pose teleop yet)
            inputs = []
            for t in handoff.teleop_inputs:
                keep = [(n, index[i], name) for n, i, name in zip(t.dims, t.indices, t.names)
                        if i in index]
                if keep:
                    inputs.append(replace(t, dims=tuple(k[0] for k in keep),
                                          indices=tuple(k[1] for k in keep),
                                          names=tuple(k[2] for k in keep)))
            changes["handoff"] = replace(handoff, teleop_inputs=tuple(inputs))
        # the command space: same robot, every end effector as (x, y, z, qw, qx, qy, qz); no
        # tokenizer patch groups (tokenizers work in the policy's space)
        self.embodiment = replace(emb, **changes)

    @property
    def quaternion_columns(self) -> tuple[tuple[int, ...], ...]:
        return tuple(s.quaternion for s in self.slots)

    def to_command(self, chunk: Chunk, base: np.ndarray, first: int = 0
                   ) -> tuple[Chunk, list[str]]:
        """Policy-space ``chunk`` (H, D_policy) -> command-space chunk (H, D_command) and the
        problems found (steps whose rotation values define no rotation; their rows are NaN).
        ``base`` (D_command,) is the command one step before step ``first`` (the first step to
        be executed): delta actions are accumulated so that the pose before step ``first`` is
        ``base`` (``p_j = p_base + sum(dp_first..dp_j)``, and backwards for the steps before),
        and every quaternion is put in its hemisphere."""
        base = np.asarray(base, dtype=np.float64)
        h = chunk.horizon
        out = np.full((h, self.embodiment.action_dim), np.nan)
        for p, c in self.passthrough:
            out[:, c] = chunk.positions[:, p]
        problems: list[str] = []
        for slot in self.slots:
            ee = slot.end_effector
            values = chunk.positions[:, list(ee.position_indices)]
            quats, bad = rot.to_quats(chunk.positions[:, list(ee.rotation_indices)],
                                      ee.rotation, ee.euler_axes)
            problems += [f"{ee.name} step {chunk.first_step + k}: {why}" for k, why in bad]
            q_base = rot.normalize(base[list(slot.quaternion)])
            if ee.is_delta:
                cum = np.cumsum(values, axis=0)
                before = cum[first - 1] if first > 0 else np.zeros(3)
                positions = base[list(slot.position)] + cum - before
                quats = accumulate_rotations(q_base, quats, ee.delta_frame, first)
            else:
                positions = values
            out[:, list(slot.position)] = positions
            out[:, list(slot.quaternion)] = rot.make_continuous(quats, q_base)
        return chunk.replace(positions=out), problems[:MAX_LISTED]

    def to_policy(self, commands: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        """Command-space rows (K, D_command) -> the policy's actions (K, D_policy): the inverse
        of :meth:`to_command`, e.g. to compare a policy with recorded pose targets or to build
        training actions from them. Delta end effectors get ``p_k - p_(k-1)`` and
        ``q_k * q_(k-1)^-1`` (base frame; ``q_(k-1)^-1 * q_k`` tool frame) with row -1 =
        ``previous`` (default: the first row, i.e. a zero first delta)."""
        commands = np.asarray(commands, dtype=np.float64)
        out = np.full((len(commands), self.policy.action_dim), np.nan)
        for p, c in self.passthrough:
            out[:, p] = commands[:, c]
        prev_row = commands[0] if previous is None else np.asarray(previous, dtype=np.float64)
        for slot in self.slots:
            ee = slot.end_effector
            pos = commands[:, list(slot.position)]
            quats = rot.normalize(commands[:, list(slot.quaternion)])
            if ee.is_delta:
                before = np.vstack([prev_row[list(slot.position)], pos[:-1]])
                q_before = np.vstack([rot.normalize(prev_row[list(slot.quaternion)]),
                                      quats[:-1]])
                pos = pos - before
                if ee.delta_frame == "base":
                    quats = rot.multiply(quats, rot.conjugate(q_before))
                else:
                    quats = rot.multiply(rot.conjugate(q_before), quats)
            out[:, list(ee.position_indices)] = pos
            out[:, list(ee.rotation_indices)] = rot.from_quats(quats, ee.rotation, ee.euler_axes)
        return out

    def pose(self, vector: np.ndarray, slot: PoseSlot) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion (4,) w, x, y, z) of ``slot`` in a command vector."""
        v = np.asarray(vector, dtype=np.float64)
        return v[list(slot.position)], v[list(slot.quaternion)]


def accumulate_rotations(start: np.ndarray, deltas: np.ndarray, frame: str = "base",
                         first: int = 0) -> np.ndarray:
    """(K, 4) rotations reached by applying ``deltas`` (K, 4) in turn, ``q_k = d_k * q_(k-1)``
    (``frame`` "base": deltas about the fixed frame's axes) or ``q_(k-1) * d_k`` ("tool": about
    the end effector's own axes), such that the rotation before step ``first`` is ``start``
    (steps before ``first`` are undone backwards from it). Renormalised every step."""
    deltas = np.asarray(deltas, dtype=np.float64)
    out = np.empty((len(deltas), 4))

    def apply(q, d):
        return rot.normalize(rot.multiply(d, q) if frame == "base" else rot.multiply(q, d))

    q = np.asarray(start, dtype=np.float64)
    for k in range(first, len(deltas)):
        q = apply(q, deltas[k])
        out[k] = q
    q = np.asarray(start, dtype=np.float64)
    for k in range(first - 1, -1, -1):  # q_k is q_(k+1) with d_(k+1) undone
        out[k] = q
        q = apply(q, rot.conjugate(deltas[k]))
    return out


# ------------------------------------------------------------------------------------------ gate


class PoseSafetyGate(SafetyGate):
    """:class:`SafetyGate` over a command space with pose slots: speeds and seam jumps of each
    end effector are measured as translation norms (m) and rotation angles (rad), and every
    quaternion must be a unit quaternion."""

    def __init__(self, embodiment: Embodiment, slots: tuple[PoseSlot, ...], **kwargs):
        super().__init__(embodiment, **kwargs)
        self.slots = tuple(slots)
        dt = embodiment.control.dt
        # a jump no larger than one legal step is motion, not a discontinuity (as for joints)
        self.seam_translation = np.array(
            [max(s.max_seam_translation, s.max_linear_speed * dt) for s in self.slots])
        self.seam_rotation = np.array(
            [max(s.max_seam_rotation, s.max_angular_speed * dt) for s in self.slots])
        self._slot_of = {j: (k, "position" if j in s.position else "rotation")
                         for k, s in enumerate(self.slots) for j in s.indices}

    def _unit_problems(self, chunk: Chunk) -> list[tuple[int, PoseSlot, float]]:
        out = []
        for s in self.slots:
            norm = np.linalg.norm(chunk.positions[:, list(s.quaternion)], axis=1)
            for i in np.flatnonzero(np.isfinite(norm) & (np.abs(norm - 1.0) > UNIT_TOLERANCE)):
                out.append((int(i), s, float(norm[i])))
        return out

    def check_values(self, chunk: Chunk) -> list[str]:
        reasons = super().check_values(chunk)
        if reasons:
            return reasons
        items = [f"{s.name} step {chunk.first_step + i}: quaternion norm {n:.6f} is not 1"
                 for i, s, n in self._unit_problems(chunk)]
        return self._listed(items, "non-unit quaternions")

    def check_seam(self, first: np.ndarray, current: np.ndarray) -> list[str]:
        original = np.asarray(first, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        masked = original.copy()
        for s in self.slots:  # measured below as a norm and an angle
            masked[list(s.indices)] = current[list(s.indices)]
        items = super().check_seam(masked, current)
        for k, s in enumerate(self.slots):
            jump = float(np.linalg.norm(original[list(s.position)] - current[list(s.position)]))
            angle = float(rot.angle_between(original[list(s.quaternion)],
                                            current[list(s.quaternion)]))
            if jump > self.seam_translation[k]:
                items.append(f"{s.name}: seam jump of {jump:.4f} m from the current command "
                             f"(limit {self.seam_translation[k]:.4f} m)")
            if angle > self.seam_rotation[k]:
                items.append(f"{s.name}: seam rotation of {angle:.4f} rad from the current "
                             f"command (limit {self.seam_rotation[k]:.4f} rad)")
        return items

    def rate_ratio(self, chunk: Chunk) -> np.ndarray:
        ratio = super().rate_ratio(chunk)
        p = chunk.positions
        for s in self.slots:
            lin = np.linalg.norm(np.diff(p[:, list(s.position)], axis=0), axis=1)
            q = p[:, list(s.quaternion)]
            ang = rot.angle_between(q[:-1], q[1:])
            ratio[:, list(s.position)] = (lin / chunk.dt / s.max_linear_speed)[:, None]
            ratio[:, list(s.quaternion)] = (ang / chunk.dt / s.max_angular_speed)[:, None]
        return ratio

    def _rate_text(self, chunk: Chunk, ratio: np.ndarray, i: int, j: int) -> str:
        if j not in self._slot_of:
            return super()._rate_text(chunk, ratio, i, j)
        k, part = self._slot_of[j]
        s, step = self.slots[k], chunk.first_step + i
        if part == "position":
            limit, unit, what = s.max_linear_speed, "m/s", "translational speed"
        else:
            limit, unit, what = s.max_angular_speed, "rad/s", "angular speed"
        return (f"{s.name} step {step}->{step + 1}: {what} {ratio[i, j] * limit:.3f} {unit} "
                f"above max {limit:.3f} {unit}")

    def invariant_violations(self, chunk: Chunk) -> list[str]:
        problems = super().invariant_violations(chunk)
        if self._unit_problems(chunk):
            problems.append("non-unit quaternions")
        return problems


# ------------------------------------------------------------------------------------ executor


class PoseChunkExecutor(ChunkExecutor):
    """:class:`ChunkExecutor` for an embodiment with end effectors (see the module docstring).

    ``submit`` takes policy-space chunks; everything else (``set_measured``, ``command``,
    ``commanded_at``, ``embodiment``) is in the command space.
    """

    def __init__(self, embodiment: Embodiment, time_jump_s: float = 0.05, **gate_kwargs):
        self.space = CommandSpace(embodiment)
        self.policy_embodiment = embodiment
        # the policy-space gate only checks values (non-finite, far out of range): its seam
        # and rate checks do not apply to deltas and are never called
        self.policy_gate = SafetyGate(embodiment, seam_limit=np.ones(embodiment.action_dim))
        gate = PoseSafetyGate(self.space.embodiment, self.space.slots, **gate_kwargs)
        super().__init__(self.space.embodiment, gate=gate, time_jump_s=time_jump_s,
                         quaternions=self.space.quaternion_columns)

    def submit(self, chunk: Chunk, now: float) -> GateResult:
        """Check ``chunk`` (policy space) for garbage, convert it to the command space and
        submit it (anchor, blend, gate)."""
        reasons = self.policy_gate.check_values(chunk)
        converted = None
        if not reasons:
            # the first step the executor will keep (it anchors the same way), and the command
            # one step before it: delta actions accumulate from there
            first = min(late_steps(chunk, now, self.min_lead_s), chunk.horizon - 1)
            base = self.commanded_at(np.array([chunk.start_time + (first - 1) * chunk.dt]))[0]
            converted, reasons = self.space.to_command(chunk, base, first)
        if reasons:
            result = GateResult.reject(*reasons)
            with self._lock:
                self._rejected += 1
                self._last_verdict = result
            return result
        return super().submit(converted, now)


def make_executor(embodiment: Embodiment, **kwargs) -> ChunkExecutor:
    """The executor for ``embodiment``: a :class:`PoseChunkExecutor` when it has end effectors,
    else a plain :class:`ChunkExecutor`. Its ``embodiment`` is the space it commands in."""
    if embodiment.end_effectors:
        return PoseChunkExecutor(embodiment, **kwargs)
    return ChunkExecutor(embodiment, **kwargs)


def pose_output_values(group: OutputGroup, positions: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion (4,) w, x, y, z) of a command-space pose_stamped group."""
    values = np.asarray(positions, dtype=np.float64)[list(group.indices)]
    return values[:3], values[3:7]
