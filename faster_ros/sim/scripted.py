"""Scripted transfer-cube demonstrations for the ALOHA sim: gripper waypoints -> joint targets.

ACT's scripted hand-over moves mocap bodies welded to the grippers; on MuJoCo 3 that fails (act
issue #45). Here the same kind of waypoints (approach, grasp, lift, meet, hand over, release) are
poses of a tool point between the fingers; they are interpolated per control step (linear
position, slerp orientation, linear gripper) and turned into joint targets by damped
least-squares inverse kinematics on each arm, then sent as ordinary 14-D joint-position actions.
The hand-over timing differs from ACT's: the right gripper opens only after the left one has
closed on the cube, and the left arm leaves only after that.

The plan is open loop given the seeded box pose (as ACT's is). No rclpy here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from faster_ros.sim.aloha import ARM_INDICES, BOX_REST_Z, GRIPPER_INDEX, AlohaSim

TOOL_OFFSET = 0.135  # tool point: this far along the gripper link's x axis (near the fingertips)
MEET = np.array([0.0, 0.5, 0.25])
# The right tool point this far above the cube centre when it grasps (fingertips just below the
# centre). Measured (40 seeds per offset, session 12): with the cube's position off by 1 cm along y
# the hand-over still ends strict in 34-36/40 (85-90%); at the first setting, 1.5 cm above the
# centre, in 28-30/40.
GRASP_HEIGHT = -0.005
# The left tool point's target relative to the cube's centre, at the middle of the measured window
# in which the hand-over ends strict (40 seeds per offset, session 12): x -0.035..-0.01 (past that
# the fingers push the cube along x out of the right grip; short of it they miss it), y -0.04..0.0,
# z -0.02..+0.005. The first setting, (0.02, 0, -0.005), sat at the x edge: 71% strict.
LEFT_REACH = np.array([-0.025, -0.02, -0.005])
LEFT_WAIT = MEET + [-0.12, 0, -0.02]  # the left tool point waits here, open, until it re-aims
REAIM_STEP = 250  # the right arm holds the cube at the meeting point from about here
# World orientations of the gripper links. At the start pose the left gripper looks along +x
# (identity) and the right one along -x (180 deg about z).
RIGHT_HOME = Rotation.from_euler("z", 180, degrees=True)
RIGHT_PICK = Rotation.from_euler("y", -60, degrees=True) * RIGHT_HOME  # pointing down, 60 deg
LEFT_HOME = Rotation.identity()
LEFT_MEET = Rotation.from_euler("x", 90, degrees=True)  # fingers close vertically


@dataclass(frozen=True)
class Waypoint:
    t: int  # control step
    xyz: np.ndarray
    rot: Rotation
    gripper: float  # 0 closed .. 1 open


def transfer_cube_waypoints(
    box_xyz: np.ndarray, home: dict[str, tuple[np.ndarray, Rotation]],
    meet: np.ndarray = MEET,
) -> dict[str, list[Waypoint]]:
    """Per-arm waypoints for the hand-over of the cube at ``box_xyz`` (right picks, left takes)
    at ``meet``, where the right arm brings the cube. The left arm waits near the nominal
    meeting point; its grasp here is a placeholder: :func:`left_grasp` re-aims it at the
    measured cube once the right arm holds it there."""
    meet = np.asarray(meet, dtype=np.float64)
    box = np.array(box_xyz, dtype=np.float64)
    box[2] = BOX_REST_Z  # the sampled pose drops 3 cm onto the table
    r_home, l_home = home["right"], home["left"]
    right = [
        Waypoint(0, r_home[0], r_home[1], 0.0),
        Waypoint(90, box + [0, 0, 0.08], RIGHT_PICK, 1.0),  # approach above the cube
        Waypoint(130, box + [0, 0, GRASP_HEIGHT], RIGHT_PICK, 1.0),  # go down
        Waypoint(160, box + [0, 0, GRASP_HEIGHT], RIGHT_PICK, 0.0),  # close
        Waypoint(175, box + [0, 0, GRASP_HEIGHT], RIGHT_PICK, 0.0),  # let the grip settle
        Waypoint(200, box + [0, 0, 0.1], RIGHT_PICK, 0.0),  # lift
        Waypoint(240, meet, RIGHT_PICK, 0.0),  # to the meeting point
        Waypoint(310, meet, RIGHT_PICK, 0.0),  # hold until the left gripper has closed
        Waypoint(330, meet, RIGHT_PICK, 1.0),  # open
        Waypoint(370, meet + [0.1, 0, 0], RIGHT_PICK, 1.0),  # move away
        Waypoint(400, meet + [0.1, 0, 0], RIGHT_PICK, 1.0),
    ]
    left = [
        Waypoint(0, l_home[0], l_home[1], 0.0),
        Waypoint(120, LEFT_WAIT, LEFT_MEET, 1.0),  # wait near the meeting point, open
        *left_grasp(meet),
    ]
    return {"left": left, "right": right}


def left_grasp(cube: np.ndarray) -> list[Waypoint]:
    """The left arm's hand-over from REAIM_STEP on, aimed at the cube's measured centre."""
    cube = np.asarray(cube, dtype=np.float64)
    away = cube + [-0.12, 0, 0]
    return [
        Waypoint(REAIM_STEP, LEFT_WAIT, LEFT_MEET, 1.0),
        Waypoint(270, cube + [-0.08, 0, 0], LEFT_MEET, 1.0),  # line up with the cube
        Waypoint(295, cube + LEFT_REACH, LEFT_MEET, 1.0),  # fingers around it
        Waypoint(315, cube + LEFT_REACH, LEFT_MEET, 0.0),  # close
        Waypoint(335, cube + LEFT_REACH, LEFT_MEET, 0.0),  # hold while the right one opens
        Waypoint(375, away, LEFT_MEET, 0.0),  # take it away
        Waypoint(400, away, LEFT_MEET, 0.0),
    ]


def interpolate(waypoints: list[Waypoint], steps: int) -> tuple[np.ndarray, Rotation, np.ndarray]:
    """(steps, 3) positions, ``steps`` rotations, (steps,) gripper values, one per control step."""
    times = np.array([w.t for w in waypoints], dtype=np.float64)
    t = np.clip(np.arange(steps, dtype=np.float64), times[0], times[-1])
    xyz = np.stack([np.interp(t, times, [w.xyz[i] for w in waypoints]) for i in range(3)], -1)
    grip = np.interp(t, times, [w.gripper for w in waypoints])
    rots = Rotation.concatenate([w.rot for w in waypoints])
    return xyz, Slerp(times, rots)(t), grip


class ArmIK:
    """Damped least-squares IK of the tool point pose of one arm, on a kinematics-only copy."""

    def __init__(
        self,
        sim: AlohaSim,
        side: str,
        damping: float = 0.02,
        iterations: int = 30,
        centering: float = 0.05,
    ):
        import mujoco

        self._mj = mujoco
        self.model = sim.model
        self.data = mujoco.MjData(sim.model)
        self.side = side
        self.body = mujoco.mj_name2id(
            sim.model, mujoco.mjtObj.mjOBJ_BODY, f"vx300s_{side}/gripper_link"
        )
        base = 0 if side == "left" else 8  # qpos/dof address of the arm's first joint
        self.qadr = np.arange(base, base + 6)
        jids = [self.model.dof_jntid[a] for a in self.qadr]
        self.lower = self.model.jnt_range[jids, 0]
        self.upper = self.model.jnt_range[jids, 1]
        self.damping = damping
        self.iterations = iterations
        # a weak pull of forearm roll and wrist rotate towards 0: keeps IK off the equivalent
        # "rolled by pi" branch, which the weak forearm-roll actuator cannot follow
        self.centering = np.diag([0.0, 0.0, 0.0, centering, 0.0, centering])

    def pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tool point position (3,) and gripper link rotation matrix (3, 3) at joint angles q."""
        self.data.qpos[self.qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        self._mj.mj_comPos(self.model, self.data)
        mat = self.data.xmat[self.body].reshape(3, 3).copy()
        return self.data.xpos[self.body] + mat[:, 0] * TOOL_OFFSET, mat

    def solve(self, q0: np.ndarray, xyz: np.ndarray, rot: np.ndarray) -> tuple[np.ndarray, float]:
        """Joint angles reaching (xyz, rotation matrix ``rot``) from ``q0``; returns them and the
        position error."""
        q = np.array(q0, dtype=np.float64)
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        reg = self.damping**2 * np.eye(6) + self.centering.T @ self.centering
        err_p = np.inf
        for _ in range(self.iterations):
            p, r = self.pose(q)
            e_p = xyz - p
            e_r = rotation_error(rot @ r.T)
            err_p = float(np.linalg.norm(e_p))
            if err_p < 1e-4 and np.linalg.norm(e_r) < 1e-3:
                break
            self._mj.mj_jac(self.model, self.data, jacp, jacr, p, self.body)
            jac = np.vstack([jacp[:, self.qadr], 0.5 * jacr[:, self.qadr]])
            err = np.concatenate([e_p, 0.5 * e_r])
            # damped least squares with the centering rows: (J'J + l^2 I + C'C) dq = J'e - C'C q
            dq = np.linalg.solve(
                jac.T @ jac + reg, jac.T @ err - self.centering.T @ (self.centering @ q)
            )
            q = np.clip(q + dq, self.lower, self.upper)
            if np.abs(dq).max() < 1e-6:
                break
        return q, err_p


def rotation_error(r_err: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) of the rotation matrix ``r_err`` (log map)."""
    v = np.array([r_err[2, 1] - r_err[1, 2], r_err[0, 2] - r_err[2, 0], r_err[1, 0] - r_err[0, 1]])
    cos = np.clip((np.trace(r_err) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-6:
        return 0.5 * v
    return v * (angle / (2.0 * np.sin(angle))) if angle < np.pi - 1e-6 else v * 0.5 * np.pi


class TransferCubeExpert:
    """The scripted hand-over for the episode ``sim`` was just reset to: ``act(step)`` gives the
    14-D joint-position action of each control step. Open loop, except that the left arm's grasp
    is re-aimed at the cube's measured position at REAIM_STEP (the position-controlled arms lag
    their targets by a few cm, so the cube is never exactly at the planned meeting point).
    ``meet`` moves the point the right arm brings the cube to (default :data:`MEET`)."""

    def __init__(self, sim: AlohaSim, steps: int = 400, reaim: bool = True,
                 meet: np.ndarray = MEET):
        self.sim, self.steps, self.reaim = sim, steps, reaim
        start = sim.qpos()
        self.iks = {side: ArmIK(sim, side) for side in ("left", "right")}
        home = {}
        for side, ik in self.iks.items():
            p, mat = ik.pose(start[list(ARM_INDICES[side])])
            home[side] = (p, Rotation.from_matrix(mat))
        self.plan = transfer_cube_waypoints(sim.box_position(), home, meet)
        self.actions = np.zeros((steps, 14))
        for side in ("left", "right"):
            self._solve(side, self.plan[side], 0, start[list(ARM_INDICES[side])])

    def _solve(self, side: str, waypoints: list[Waypoint], first: int, q0: np.ndarray) -> None:
        xyz, rots, grip = interpolate(waypoints, self.steps)
        mats = rots.as_matrix()
        q = np.array(q0, dtype=np.float64)
        idx = list(ARM_INDICES[side])
        for k in range(first, self.steps):
            q, _ = self.iks[side].solve(q, xyz[k], mats[k])
            self.actions[k, idx] = q
        self.actions[first:, GRIPPER_INDEX[side]] = grip[first:]

    def act(self, step: int) -> np.ndarray:
        if self.reaim and step == REAIM_STEP:
            left = [w for w in self.plan["left"] if w.t < REAIM_STEP]
            self.plan["left"] = left + left_grasp(self.sim.box_position())
            q0 = self.actions[step - 1, list(ARM_INDICES["left"])]
            self._solve("left", self.plan["left"], step, q0)
        return self.actions[step]


def plan_transfer_cube(sim: AlohaSim, steps: int = 400) -> np.ndarray:
    """(steps, 14) open-loop joint-position actions (no re-aiming) for the episode ``sim`` was
    just reset to."""
    return TransferCubeExpert(sim, steps, reaim=False).actions
