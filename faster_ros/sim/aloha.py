"""The ALOHA bimanual MuJoCo simulation (gym-aloha's scenes), lean enough for a shared CPU.

gym-aloha's own env renders three 480x640 cameras with shadows and 4x anti-aliasing at every step
(about 5 steps/s here). This wrapper loads the same scene files and runs the same control law
(gym-aloha's 14-D joint-position action: 2 x (6 arm joints + normalised gripper), 50 Hz, 10
physics sub-steps), but renders only the camera that is asked for, at the size asked for, without
shadows or anti-aliasing, and only when :meth:`AlohaSim.render` is called.

Success, two ways:
- ``builtin``: gym-aloha's reward 4 (a left finger touches the cube while the cube is off the
  table) reached at any step; lenient: a brushing touch during the hand-over counts;
- ``strict``: at the last step the cube is in the air (off the table, its centre >= 3 cm above its
  resting height), both left fingers touch it and no right finger does.

How far a failed episode got is the highest reward of the episode (``Outcome.max_reward``): 1 the
right gripper touched the cube, 2 lifted it, 3 the left gripper touched it (ACT's sub-task
stages for this task: touched, lifted, transfer).

No rclpy here; the sim_robot node (faster_ros.ros.sim_robot) publishes it on ROS topics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

TASKS = {
    "transfer_cube": "bimanual_viperx_transfer_cube.xml",
    "insertion": "bimanual_viperx_insertion.xml",
}
DT = 0.02  # gym-aloha's control period (50 Hz)
EPISODE_STEPS = 400  # gym-aloha's default 300 is too tight: first successes come at 213-293
JOINT_NAMES = (
    "left_arm_waist",
    "left_arm_shoulder",
    "left_arm_elbow",
    "left_arm_forearm_roll",
    "left_arm_wrist_angle",
    "left_arm_wrist_rotate",
    "left_arm_gripper",
    "right_arm_waist",
    "right_arm_shoulder",
    "right_arm_elbow",
    "right_arm_forearm_roll",
    "right_arm_wrist_angle",
    "right_arm_wrist_rotate",
    "right_arm_gripper",
)
ARM_INDICES = {"left": tuple(range(6)), "right": tuple(range(7, 13))}
GRIPPER_INDEX = {"left": 6, "right": 13}
BOX_REST_Z = 0.02  # centre height of the 4 cm cube resting on the table
LIFT_MARGIN = 0.03


class SimUnavailable(RuntimeError):
    """mujoco or gym-aloha is missing, or no headless OpenGL context can be made."""


def _import_mujoco():
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
        from gym_aloha import constants
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SimUnavailable(f"the simulator needs requirements/sim.txt installed: {exc}") from exc
    return mujoco, constants


@dataclass(frozen=True)
class Outcome:
    """How an episode (or the state so far) stands."""

    strict: bool
    builtin: bool
    reward: int
    box_z: float
    max_reward: int = 0  # the highest reward of the episode so far: how far the task got


class AlohaSim:
    """One gym-aloha scene, stepped at 50 Hz with joint-position actions.

    ``action`` and :meth:`qpos` use gym-aloha's convention: per arm 6 joint angles (rad) and the
    gripper opening normalised to [0, 1] (0 closed).
    """

    def __init__(
        self,
        task: str = "transfer_cube",
        image_hw: tuple[int, int] = (240, 320),
        camera: str = "top",
    ):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
        mujoco, constants = _import_mujoco()
        self._mj, self._c = mujoco, constants
        self.task = task
        self.model = mujoco.MjModel.from_xml_path(str(constants.ASSETS_DIR / TASKS[task]))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = int(round(DT / self.model.opt.timestep))
        self.camera = camera
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self._renderer = None
        geom = {
            g: mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, g)
            for g in (
                "red_box",
                "table",
                "vx300s_left/10_left_gripper_finger",
                "vx300s_left/10_right_gripper_finger",
                "vx300s_right/10_left_gripper_finger",
                "vx300s_right/10_right_gripper_finger",
            )
        }
        self._geom = geom
        self._box_joint_qpos = self.model.nq - 7
        self.step_count = 0
        self.max_reward = 0
        self.seed: int | None = None

    # ---------------------------------------------------------------------------------- episode

    def reset(self, seed: int | None = None, box_pose: np.ndarray | None = None) -> np.ndarray:
        """Start pose of the arms; the box where gym-aloha's seeded sampler puts it (or
        ``box_pose``: xyz + wxyz). Returns the 14-D joint state."""
        from gym_aloha.utils import sample_box_pose, sample_insertion_pose

        mj, c = self._mj, self._c
        mj.mj_resetData(self.model, self.data)
        self.data.qpos[:16] = c.START_ARM_POSE
        self.data.ctrl[:] = c.START_ARM_POSE
        if box_pose is None:
            box_pose = (
                sample_box_pose(seed)
                if self.task == "transfer_cube"
                else np.concatenate(sample_insertion_pose(seed))
            )
        box_pose = np.asarray(box_pose, dtype=np.float64)
        self.data.qpos[self.model.nq - box_pose.size :] = box_pose
        mj.mj_forward(self.model, self.data)
        self.seed = seed
        self.step_count = 0
        self.max_reward = 0
        return self.qpos()

    def step(self, action: np.ndarray) -> int:
        """Apply one 14-D action for one control period; returns gym-aloha's reward (0-4)."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (14,) or not np.isfinite(a).all():
            raise ValueError(f"action must be 14 finite values, got shape {a.shape}: {a}")
        c = self._c
        ctrl = self.data.ctrl
        for side, base in (("left", 0), ("right", 8)):
            arm = list(ARM_INDICES[side])
            ctrl[base : base + 6] = a[arm]
            g = c.unnormalize_puppet_gripper_position(a[GRIPPER_INDEX[side]])
            ctrl[base + 6], ctrl[base + 7] = g, -g
        for _ in range(self.n_substeps):
            self._mj.mj_step(self.model, self.data)
        self.step_count += 1
        reward = self.reward()
        self.max_reward = max(self.max_reward, reward)
        return reward

    @property
    def time(self) -> float:
        """Simulated seconds since reset (control steps x 20 ms)."""
        return self.step_count * DT

    # ------------------------------------------------------------------------------ observation

    def qpos(self) -> np.ndarray:
        """14-D joint state: arm angles and normalised gripper openings."""
        q = self.data.qpos
        norm = self._c.normalize_puppet_gripper_position
        return np.concatenate([q[0:6], [norm(q[6])], q[8:14], [norm(q[14])]])

    def set_qpos(self, state: np.ndarray) -> None:
        """The inverse of :meth:`qpos`: put both arms at the 14-D joint state ``state`` (arm
        angles, normalised grippers) without stepping the physics; the cube stays where it
        is."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (14,) or not np.isfinite(state).all():
            raise ValueError(f"arm state must be 14 finite values, got {state.shape}")
        q = self.data.qpos
        for base, s in ((0, state[0:7]), (8, state[7:14])):  # per arm: 6 joints + 2 fingers
            q[base:base + 6] = s[:6]
            g = self._c.unnormalize_puppet_gripper_position(s[6])
            q[base + 6], q[base + 7] = g, -g
        self._mj.mj_forward(self.model, self.data)

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB from the sim's camera (no shadows, no anti-aliasing)."""
        if self._renderer is None:
            mj = self._mj
            self.model.vis.quality.offsamples = 0
            try:
                self._renderer = mj.Renderer(self.model, *self.image_hw)
            except Exception as exc:  # mujoco raises plain Exception/RuntimeError on GL failure
                raise SimUnavailable(
                    f"cannot render headless with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {exc}"
                ) from exc
            self._renderer.scene.flags[mj.mjtRndFlag.mjRND_SHADOW] = False
        self._renderer.update_scene(self.data, camera=self.camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---------------------------------------------------------------------------------- success

    def _contacts(self) -> set[tuple[int, int]]:
        con = self.data.contact
        n = self.data.ncon
        pairs = set()
        for g1, g2 in zip(con.geom1[:n], con.geom2[:n]):
            pairs.add((int(g1), int(g2)))
            pairs.add((int(g2), int(g1)))
        return pairs

    def reward(self) -> int:
        """gym-aloha's transfer-cube reward from the current contacts (0-4)."""
        if self.task != "transfer_cube":
            raise NotImplementedError("only transfer_cube success is implemented")
        g, pairs = self._geom, self._contacts()
        box = g["red_box"]
        touch_left = (box, g["vx300s_left/10_left_gripper_finger"]) in pairs
        touch_right = (box, g["vx300s_right/10_right_gripper_finger"]) in pairs
        on_table = (box, g["table"]) in pairs
        reward = 0
        if touch_right:
            reward = 1
        if touch_right and not on_table:
            reward = 2
        if touch_left:
            reward = 3
        if touch_left and not on_table:
            reward = 4
        return reward

    def box_position(self) -> np.ndarray:
        return self.data.qpos[self._box_joint_qpos : self._box_joint_qpos + 3].copy()

    def outcome(self) -> Outcome:
        """Strict check on the current state, and the built-in flag over the episode so far."""
        g, pairs = self._geom, self._contacts()
        box = g["red_box"]
        z = float(self.box_position()[2])
        left = all(
            (box, g[f"vx300s_left/10_{f}_gripper_finger"]) in pairs for f in ("left", "right")
        )
        right = any(
            (box, g[f"vx300s_right/10_{f}_gripper_finger"]) in pairs for f in ("left", "right")
        )
        in_air = (box, g["table"]) not in pairs and z >= BOX_REST_Z + LIFT_MARGIN
        return Outcome(
            strict=bool(in_air and left and not right),
            builtin=self.max_reward >= 4,
            reward=self.reward(),
            box_z=z,
            max_reward=int(self.max_reward),
        )
