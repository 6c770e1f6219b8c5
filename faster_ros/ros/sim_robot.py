"""Simulated robot node: the ALOHA MuJoCo sim (faster_ros.sim.aloha) on the robot's topics.

It publishes what the robot would (joint states on the embodiment's joint input, the top camera as
sensor_msgs/Image) and consumes every command interface of its embodiment config like the mock
robot does (trajectories interpolated at sim time, streamed setpoints held). It owns the clock:
sim time goes out on /clock (run the other nodes with use_sim_time), 20 ms per physics step, and
the loop steps as fast as the CPU allows, at most ``real_time_factor`` x real time (0: no cap),
so a slow or shared CPU slows the world down instead of breaking the stack's timing.

An episode's steps start counting at the first command (the clock runs before that, with the
world frozen, so the policy can start up), or after ``start_timeout_s`` of sim time without one
(a policy that never commands fails its episodes instead of stalling the evaluation). After
``episode_steps`` steps the strict and built-in success checks go out as JSON on
``~/episode_result`` (and to ``results_path`` as JSON lines); then the next seeded episode
starts (commands stamped before the reset + RESET_PAUSE_S, meant for the previous episode, are
ignored, and a message on graph.REANCHOR_TOPIC tells the executor that the robot was moved, so
that it starts again from the measured position), or, after ``episodes`` episodes (0: never),
the world stays frozen at its last state.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from faster_ros import graph
from faster_ros.control.timing import sample_points
from faster_ros.embodiment import load_embodiment
from faster_ros.ros import conversions as conv
from faster_ros.ros.node_base import declare, run
from faster_ros.ros.qos import COMMAND_QOS, SENSOR_PUB_QOS, STATUS_QOS
from faster_ros.sim.aloha import DT, EPISODE_STEPS, JOINT_NAMES, AlohaSim

RESET_PAUSE_S = 0.5  # after a reset, commands stamped within this much sim time are ignored


class SimRobotNode(Node):
    def __init__(self, **kwargs):
        super().__init__("sim_robot", **kwargs)
        self._emb = load_embodiment(
            declare(
                self,
                "embodiment",
                "aloha_sim",
                "embodiment name or config YAML path",
                read_only=True,
            )
        )
        task = declare(self, "task", "transfer_cube", "gym-aloha task", read_only=True)
        self._seed = int(declare(self, "seed", 0, "seed of the first episode's box pose"))
        self._episodes = int(declare(self, "episodes", 0, "episodes to run (0: keep going)"))
        self._episode_steps = int(
            declare(self, "episode_steps", EPISODE_STEPS, "control steps (20 ms) per episode")
        )
        self._start_timeout = float(
            declare(
                self,
                "start_timeout_s",
                10.0,
                "sim seconds the world waits frozen for the first command of an episode; then "
                "it runs anyway (a policy that never commands fails the episode, it does not "
                "stall the evaluation)",
            )
        )
        self._rtf = float(
            declare(
                self,
                "real_time_factor",
                1.0,
                "at most this many sim seconds per wall second (0: no cap)",
            )
        )
        size = declare(
            self, "image_size", [240, 320], "rendered frame height, width", read_only=True
        )
        self._results_path = declare(
            self, "results_path", "", "append each episode's result here as a JSON line"
        )
        self._record_path = declare(
            self, "record_frames", "", "save the frames of the first episode to this .npz"
        )
        emb = self._emb
        unknown = [d for d in emb.dim_names if d not in JOINT_NAMES]
        if unknown:
            raise ValueError(
                f"{emb.source}: dimensions {unknown} are not ALOHA sim joints "
                f"(expected names from {JOINT_NAMES})"
            )
        self._to_sim = [emb.dim_names.index(j) for j in JOINT_NAMES]
        self.sim = AlohaSim(
            task,
            image_hw=(int(size[0]), int(size[1])),
            camera=emb.cameras[0].name if emb.cameras else "top",
        )

        self._lock = threading.Lock()
        self._trajectories: dict[str, tuple] = {}
        self._commands_received = 0
        self._episode = 0
        self._started = False  # the first command of the episode has arrived
        self._accept_after = 0.0  # commands stamped earlier belong to the previous episode
        self._clock = 0.0
        self._frames: list[np.ndarray] = []
        self.results: list[dict] = []
        self._reset(self._seed)

        self._clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        self._joint_pubs = {
            j.topic: self.create_publisher(JointState, j.topic, SENSOR_PUB_QOS)
            for j in emb.joint_inputs
        }
        self._camera_pubs = [
            (
                c,
                self.create_publisher(Image, c.topic, SENSOR_PUB_QOS),
                max(1, round(1.0 / (c.rate_hz * DT))),
            )
            for c in emb.cameras
        ]
        bad = [c.topic for c in emb.cameras if c.msg_type != "Image"]
        if bad:
            raise ValueError(f"{emb.source}: the sim publishes sensor_msgs/Image, not {bad}")
        self._result_pub = self.create_publisher(String, "~/episode_result", STATUS_QOS)
        self._reanchor_pub = self.create_publisher(String, graph.REANCHOR_TOPIC, COMMAND_QOS)
        for group in emb.outputs:
            self.create_subscription(
                conv.MESSAGE_TYPES[group.kind], group.topic, self._command_cb(group), COMMAND_QOS
            )
        self._running = True
        self._episode_wall0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="sim_loop", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{task}: seed {self._seed}, {self._episode_steps} steps/episode, real-time factor "
            f"cap {self._rtf or 'none'}; world frozen until the first command"
        )

    # ------------------------------------------------------------------------------ commands

    def _reset(self, seed: int) -> None:
        self.sim.reset(seed=seed)
        q = self.sim.qpos()
        self._q0, self._travel = q.copy(), 0.0
        self._target = np.empty(self._emb.action_dim)
        self._target[self._to_sim] = q
        self._trajectories.clear()
        self._started = False
        self._accept_after = self._clock + RESET_PAUSE_S
        self._frozen_since = self._clock

    def _command_cb(self, group):
        emb = self._emb
        lo, hi = emb.lower[list(group.indices)], emb.upper[list(group.indices)]

        def callback(msg) -> None:
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            if stamp is not None and conv.to_sec(stamp) < self._accept_after:
                return  # computed for the previous episode
            try:
                if group.kind == "joint_trajectory":
                    if not msg.points:
                        return
                    order = [list(msg.joint_names).index(j) for j in group.joints]
                    start = conv.to_sec(msg.header.stamp) or self._clock
                    times = [start + conv.to_sec(p.time_from_start) for p in msg.points]
                    values = [np.asarray(p.positions, dtype=np.float64)[order] for p in msg.points]
                    if not all(np.isfinite(v).all() for v in values):
                        raise ValueError("non-finite trajectory point")
                    entry = (group, times, [np.clip(v, lo, hi) for v in values])
                    with self._lock:
                        self._trajectories[group.name] = entry
                else:
                    values = conv.command_values(group, msg)
                    if values is None:
                        return
                    if values.shape != (len(group.indices),) or not np.isfinite(values).all():
                        raise ValueError(f"bad values {values}")
                    with self._lock:
                        self._target[list(group.indices)] = np.clip(values, lo, hi)
            except ValueError as exc:
                self.get_logger().warning(
                    f"command on {group.topic} ignored (held): {exc}", throttle_duration_sec=2.0
                )
                return
            self._commands_received += 1
            self._started = True

        return callback

    def _targets(self, now: float) -> np.ndarray:
        with self._lock:
            for group, times, values in self._trajectories.values():
                self._target[list(group.indices)] = sample_points(times, values, now)
            return self._target.copy()

    # ------------------------------------------------------------------------------ simulation

    def _loop(self) -> None:
        wall0, clock0 = time.monotonic(), self._clock
        while self._running and rclpy.ok(context=self.context):
            try:
                self._step()
            except Exception as exc:  # keep the node up; the robot is held at its last state
                if not rclpy.ok(context=self.context):
                    break  # shutting down: publishers are gone
                self.get_logger().error(f"sim step failed: {exc!r}", throttle_duration_sec=2.0)
                time.sleep(0.1)
            if self._rtf > 0:
                ahead = (self._clock - clock0) / self._rtf - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
                elif ahead < -0.5:  # fell behind (busy CPU): do not try to catch up
                    wall0, clock0 = time.monotonic(), self._clock

    def _step(self) -> None:
        sim = self.sim
        done = self._episodes and self._episode >= self._episodes
        if (not self._started and not done and self._start_timeout > 0
                and self._clock - self._frozen_since >= self._start_timeout):
            self._started = True
            self.get_logger().warning(
                f"episode {self._episode}: no command in {self._start_timeout:.0f} s of sim "
                f"time; the episode runs without one (the robot holds its start pose)")
        if self._started and not done:
            if sim.step_count == 0:
                self._episode_wall0 = time.monotonic()
            target = self._targets(self._clock)
            sim.step(target[self._to_sim])
            self._travel = max(self._travel, float(np.abs(sim.qpos() - self._q0).max()))
        self._clock += DT
        stamp = conv.to_time(self._clock)
        self._clock_pub.publish(Clock(clock=stamp))
        q = sim.qpos()
        for ji in self._emb.joint_inputs:
            values = [q[JOINT_NAMES.index(j)] for j in ji.joints]
            self._joint_pubs[ji.topic].publish(conv.joint_state(ji.joints, values, stamp))
        tick = int(round(self._clock / DT))
        for cam, pub, every in self._camera_pubs:
            if tick % every == 0:
                frame = sim.render()
                pub.publish(conv.rgb_to_image(frame, stamp, cam.name))
                if self._record_path and self._episode == 0 and self._started:
                    self._frames.append(frame)
        if self._started and not done and sim.step_count >= self._episode_steps:
            self._finish_episode()

    def _finish_episode(self) -> None:
        o = self.sim.outcome()
        wall = max(1e-9, time.monotonic() - self._episode_wall0)
        result = {
            "episode": self._episode,
            "seed": self.sim.seed,
            "strict_success": o.strict,
            "builtin_success": o.builtin,
            "final_reward": o.reward,
            "max_reward": o.max_reward,
            "box_z": round(o.box_z, 4),
            "steps": self.sim.step_count,
            "sim_time_s": round(self._clock, 3),
            "steps_per_s": round(self.sim.step_count / wall, 1),
            "wall_s": round(wall, 2),
            "commands_received": self._commands_received,
            "max_joint_travel": round(self._travel, 4),
        }
        self.results.append(result)
        line = json.dumps(result)
        self._result_pub.publish(String(data=line))
        self.get_logger().info(f"episode done: {line}")
        if self._results_path:
            with open(self._results_path, "a") as f:
                f.write(line + "\n")
        if self._record_path and self._episode == 0 and self._frames:
            np.savez_compressed(self._record_path, frames=np.stack(self._frames))
        self._episode += 1
        if not self._episodes or self._episode < self._episodes:
            self._reset(self._seed + self._episode)
            # the reset moved the robot outside the stack: without this the executor would hold
            # the previous episode's last command and refuse every chunk for its seam jump
            self._reanchor_pub.publish(String(data=f"sim episode {self._episode} reset (seed "
                                                   f"{self.sim.seed})"))

    def shutdown(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.sim.close()


def main(args: list[str] | None = None) -> None:
    run(SimRobotNode, args)


if __name__ == "__main__":
    main()
