"""Scripted demonstration generator for the ALOHA sim (transfer-cube).

    python -m faster_ros.sim.record --out /work/sim_data/transfer_cube --episodes 50

Runs the scripted expert (faster_ros.sim.scripted) on seeded box poses, keeps only the episodes
that pass the strict final-state check, and writes them as
- a LeRobot v2.1 dataset (``OUT/lerobot``: parquet per episode + H.264 mp4 of the top camera,
  ``observation.state`` = joint state before the step, ``action`` = the commanded joint targets),
  which faster_ros.data.lerobot reads;
- one rosbag2 (mcap) per episode (``OUT/bags/episode_NNNNNN``): joint states and commands at
  50 Hz, the top camera JPEG-compressed at 25 Hz, on the topics of config/aloha_sim.yaml;
- ``OUT/summary.json``: attempts, strict and built-in successes, the generator's own success
  rate, wall time and steps/s.
No rclpy here.
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from faster_ros.sim.aloha import DT, EPISODE_STEPS, GRIPPER_INDEX, JOINT_NAMES, AlohaSim
from faster_ros.sim.scripted import MEET, TransferCubeExpert

FPS = int(round(1 / DT))
CAMERA_KEY = "observation.images.top"
FRAME_EVERY = 2  # the camera runs at 25 Hz (config/aloha_sim.yaml): a frame every second step
TASK = "Transfer the red cube from the right gripper to the left gripper."
NOISE_TAU_S = 0.3  # correlation time of the DART arm perturbation (s)
NOISE_FADE = (100, 130)  # steps: full during the approach, none from the grasp on


def arm_perturbation(steps: int, std: float, seed: int, tau_s: float = NOISE_TAU_S,
                     fade: tuple[int, int] = NOISE_FADE) -> np.ndarray:
    """(steps, 14) slowly varying offsets for the arm joints (zero on the grippers): per joint an
    Ornstein-Uhlenbeck process with stationary standard deviation ``std`` (rad) and correlation
    time ``tau_s``, starting from its stationary distribution; seeded. Faded out linearly
    between steps ``fade`` (and zero after): the grasp and the hand-over need the plan's
    precision, and episodes that fail are not kept."""
    rng = np.random.default_rng([seed, 7])
    a = np.exp(-DT / tau_s)
    out = np.zeros((steps, 14))
    arms = [i for i in range(14) if i not in GRIPPER_INDEX.values()]
    x = rng.normal(0.0, std, len(arms))
    for k in range(steps):
        out[k, arms] = x * np.clip((fade[1] - k) / max(fade[1] - fade[0], 1), 0.0, 1.0)
        x = a * x + np.sqrt(1 - a * a) * rng.normal(0.0, std, len(arms))
    return out


def run_episode(
    sim: AlohaSim,
    seed: int,
    steps: int = EPISODE_STEPS,
    render: bool = True,
    frame_every: int = FRAME_EVERY,
    noise: float = 0.0,
    meet_jitter: float = 0.0,
):
    """One scripted episode: (states (T, 14), actions (T, 14), frames (T, H, W, 3) or None,
    outcome). With ``noise`` > 0 (DART, Laskey et al. 2017) the arms are sent the expert's
    targets plus :func:`arm_perturbation` while the recorded action stays the expert's own
    target: the states wander off the plan as a policy's would, and each recorded action is the
    correction back to it. With ``meet_jitter`` > 0 the hand-over happens at
    :func:`meeting_point` instead of the nominal one."""
    sim.reset(seed=seed)
    offsets = arm_perturbation(steps, noise, seed) if noise > 0 else None
    expert = TransferCubeExpert(sim, steps, meet=meeting_point(seed, meet_jitter))
    return record_expert(sim, expert, steps, render, frame_every, offsets)


def meeting_point(seed: int, jitter: float) -> np.ndarray:
    """Where the right arm brings the cube in the seeded episode: the nominal meeting point
    moved by up to ``jitter`` metres along each axis (uniform, seeded). A policy's right arm
    never brings the cube exactly to the nominal point; demonstrations that all meet at one
    point teach the left arm to go there, not to the cube. With the point spread, the left
    arm's grasp (re-aimed at the measured cube) follows the cube in the demonstrations."""
    if jitter < 0:
        raise ValueError(f"meet jitter must be >= 0 metres, got {jitter}")
    return MEET + np.random.default_rng([seed, 13]).uniform(-jitter, jitter, 3)


def run_recovery_episode(
    sim: AlohaSim,
    seed: int,
    policy,
    emb,
    takeover: int,
    steps: int = EPISODE_STEPS,
    render: bool = True,
    frame_every: int = FRAME_EVERY,
):
    """One round of DAgger (Ross et al. 2011) with the scripted expert: ``policy`` drives the
    first ``takeover`` steps of the seeded episode (not recorded), then the expert plans afresh
    from where the policy left the arms and the cube and does the whole task from there
    (recorded: ``steps`` steps, returned as :func:`run_episode` does). The demonstrations then
    start from states the policy itself visits, each labelled with the expert's way on."""
    from faster_ros.sim.policy_loop import drive

    sim.reset(seed=seed)
    drive(sim, policy, emb, takeover, [], [sim.qpos()], latency_steps=0)
    return record_expert(sim, TransferCubeExpert(sim, steps), steps, render, frame_every)


def record_expert(sim: AlohaSim, expert: TransferCubeExpert, steps: int, render: bool,
                  frame_every: int, offsets: np.ndarray | None = None):
    """Run ``expert`` for ``steps`` steps from the sim's current state, recording the state
    before each step, the expert's action and every ``frame_every``-th frame; the arms are sent
    the action plus ``offsets`` (steps, 14) when given."""
    states, actions, frames = [], [], []
    for k in range(steps):
        states.append(sim.qpos())
        if render and k % frame_every == 0:  # frames of steps 0, frame_every, ...
            frames.append(sim.render())
        a = expert.act(k)
        actions.append(a)
        sim.step(a if offsets is None else a + offsets[k])
    return (
        np.asarray(states, np.float32),
        np.asarray(actions, np.float32),
        np.stack(frames) if render else None,
        sim.outcome(),
    )


# -------------------------------------------------------------------------------------- LeRobot


def write_video(path: Path, frames: np.ndarray, fps: float = FPS) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "g": "10"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class LeRobotWriter:
    """A LeRobot v2.1 dataset written one episode at a time."""

    def __init__(self, root: Path, image_hw: tuple[int, int], task: str = TASK):
        self.root = root
        self.image_hw = image_hw
        self.task = task
        self.episodes: list[dict] = []
        self.frames_total = 0
        self.video_fps = FPS / FRAME_EVERY
        (root / "meta").mkdir(parents=True, exist_ok=True)

    def add(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        frames: np.ndarray,
        frame_every: int = FRAME_EVERY,
    ) -> int:
        """One episode; ``frames`` are those of steps 0, frame_every, 2 * frame_every, ..."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        idx = len(self.episodes)
        n = len(actions)
        path = self.root / f"data/chunk-000/episode_{idx:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        dims = states.shape[1]
        table = pa.table(
            {
                "observation.state": pa.FixedSizeListArray.from_arrays(
                    pa.array(states.reshape(-1), pa.float32()), dims
                ),
                "action": pa.FixedSizeListArray.from_arrays(
                    pa.array(actions.reshape(-1), pa.float32()), dims
                ),
                "timestamp": pa.array(np.arange(n, dtype=np.float32) / FPS),
                "frame_index": pa.array(np.arange(n, dtype=np.int64)),
                "episode_index": pa.array(np.full(n, idx, dtype=np.int64)),
                "index": pa.array(np.arange(n, dtype=np.int64) + self.frames_total),
                "task_index": pa.array(np.zeros(n, dtype=np.int64)),
            }
        )
        pq.write_table(table, path)
        self.video_fps = FPS / frame_every
        video = self.root / f"videos/chunk-000/{CAMERA_KEY}/episode_{idx:06d}.mp4"
        write_video(video, frames, fps=self.video_fps)
        self.episodes.append({"episode_index": idx, "tasks": [self.task], "length": n})
        self.frames_total += n
        self.finish()  # metadata stays valid after every episode
        return idx

    def finish(self) -> None:
        h, w = self.image_hw
        names = list(JOINT_NAMES)
        info = {
            "codebase_version": "v2.1",
            "robot_type": "aloha_sim",
            "total_episodes": len(self.episodes),
            "total_frames": self.frames_total,
            "total_tasks": 1,
            "total_videos": len(self.episodes),
            "total_chunks": 1,
            "chunks_size": 1000,
            "fps": FPS,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
            "episode_{episode_index:06d}.mp4",
            "features": {
                "observation.state": {"dtype": "float32", "shape": [14], "names": [names]},
                "action": {"dtype": "float32", "shape": [14], "names": [names]},
                CAMERA_KEY: {
                    "dtype": "video",
                    "shape": [h, w, 3],
                    "names": ["height", "width", "channels"],
                    "info": {
                        "video.fps": self.video_fps,
                        "video.codec": "h264",
                        "video.pix_fmt": "yuv420p",
                    },
                },
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None},
            },
        }
        meta = self.root / "meta"
        (meta / "info.json").write_text(json.dumps(info, indent=2))
        (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": self.task}) + "\n")
        (meta / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in self.episodes))


# -------------------------------------------------------------------------------------- rosbag2


def write_bag(
    path: Path,
    states: np.ndarray,
    actions: np.ndarray,
    frames: np.ndarray,
    frame_every: int = FRAME_EVERY,
    emb=None,
) -> None:
    """One episode as a rosbag2 (mcap) on the embodiment's topics (sim time from 0); ``frames``
    as in :meth:`LeRobotWriter.add`, recorded at the camera rate of the config."""
    import cv2

    from faster_ros.embodiment import load_embodiment
    from faster_ros.replay.bagwriter import BagWriter, typestore

    emb = emb or load_embodiment("aloha_sim")
    store = typestore()
    T = store.types
    joint_topic = emb.joint_inputs[0].topic
    camera = emb.cameras[0]
    image_topic = camera.topic + "/compressed"
    command_topic = emb.replay.get("action_topic", "/aloha/joint_command")
    every = max(1, round(1.0 / (camera.rate_hz * DT)))
    if every % frame_every:
        raise ValueError(f"camera every {every} steps, frames every {frame_every}: not aligned")

    def header(t_ns: int, frame_id: str = ""):
        stamp = T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)

    def joints(t_ns: int, values: np.ndarray):
        return T["sensor_msgs/msg/JointState"](
            header=header(t_ns),
            name=list(JOINT_NAMES),
            position=np.asarray(values, np.float64),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        )

    joint_type, image_type = "sensor_msgs/msg/JointState", "sensor_msgs/msg/CompressedImage"
    with BagWriter(path, "mcap") as bag:
        bag.add(joint_topic, joint_type)
        bag.add(command_topic, joint_type)
        bag.add(image_topic, image_type)
        for k in range(len(actions)):
            t_ns = int(round((k + 1) * DT * 1e9))  # sim time starts at one step, like /clock
            bag.write(joint_topic, t_ns, store.serialize_cdr(joints(t_ns, states[k]), joint_type))
            if k % every == 0:
                ok, buf = cv2.imencode(
                    ".jpg", frames[k // frame_every][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]
                )
                msg = T[image_type](
                    header=header(t_ns, camera.name),
                    format="jpeg",
                    data=np.frombuffer(buf.tobytes(), np.uint8),
                )
                bag.write(image_topic, t_ns, store.serialize_cdr(msg, image_type))
            bag.write(
                command_topic, t_ns, store.serialize_cdr(joints(t_ns, actions[k]), joint_type)
            )


# ------------------------------------------------------------------------------------------ main


def generate(
    out: Path,
    episodes: int,
    seed_start: int = 1000,
    max_attempts: int | None = None,
    image_hw: tuple[int, int] = (240, 320),
    frame_every: int = FRAME_EVERY,
    bags: bool = True,
    progress: bool = True,
    noise: float = 0.0,
    recover: tuple | None = None,
    recover_label: str = "",
    meet_jitter: float = 0.0,
) -> dict:
    """Keep ``episodes`` strict successes. ``recover`` = (policy, embodiment, (first, last)):
    recovery demonstrations (:func:`run_recovery_episode`), the policy handing over at a seeded
    step in first..last; ``recover_label`` names the policy in the summary."""
    from tqdm import tqdm

    if recover is not None and noise > 0:
        raise ValueError("recovery demonstrations and DART noise are separate recipes")

    out.mkdir(parents=True, exist_ok=True)
    sim = AlohaSim(image_hw=image_hw)
    lerobot = LeRobotWriter(out / "lerobot", image_hw)
    max_attempts = max_attempts or 3 * episodes
    attempts, strict, builtin, kept, failed = 0, 0, 0, [], []
    t0 = time.monotonic()
    sim_s = 0.0
    bar = tqdm(total=episodes, desc="demos", unit="ep", disable=not progress)
    seed = seed_start
    while len(kept) < episodes and attempts < max_attempts:
        ts = time.monotonic()
        takeover = None
        if recover is not None:
            policy, emb, (first, last) = recover
            takeover = int(np.random.default_rng([seed, 11]).integers(first, last + 1))
            states, actions, frames, outcome = run_recovery_episode(
                sim, seed, policy, emb, takeover, frame_every=frame_every)
        # the sim is deterministic: a quick run without the camera first, the rendered one
        # only for an episode that will be kept (with noise, half of them fail)
        elif noise > 0 and not run_episode(sim, seed, render=False, noise=noise,
                                           meet_jitter=meet_jitter)[3].strict:
            states, actions, frames, outcome = None, None, None, sim.outcome()
        else:
            states, actions, frames, outcome = run_episode(sim, seed, frame_every=frame_every,
                                                           noise=noise, meet_jitter=meet_jitter)
        sim_s += time.monotonic() - ts
        attempts += 1
        strict += outcome.strict
        builtin += outcome.builtin
        if outcome.strict:
            idx = lerobot.add(states, actions, frames, frame_every)
            if bags:
                write_bag(
                    out / "bags" / f"episode_{idx:06d}", states, actions, frames, frame_every
                )
            kept.append({"episode_index": idx, "seed": seed, "builtin": outcome.builtin,
                         **({"takeover_step": takeover} if takeover is not None else {})})
            bar.update(1)
        else:
            failed.append(
                {"seed": seed, "builtin": outcome.builtin, "box_z": round(outcome.box_z, 4)}
            )
        bar.set_postfix(attempts=attempts, strict_rate=f"{strict / attempts:.2f}")
        seed += 1
    bar.close()
    wall = time.monotonic() - t0
    summary = {
        "task": "transfer_cube",
        "episodes_kept": len(kept),
        "attempts": attempts,
        "seeds": [seed_start, seed - 1],
        "strict_successes": strict,
        "builtin_successes": builtin,
        "generator_strict_success_rate": round(strict / max(1, attempts), 4),
        "generator_builtin_success_rate": round(builtin / max(1, attempts), 4),
        "wall_s": round(wall, 1),
        "sim_steps_per_s_with_rendering": round(attempts * EPISODE_STEPS / max(1e-9, sim_s), 1),
        "image_hw": list(image_hw),
        "frame_every": frame_every,
        "arm_noise": {"std_rad": noise, "tau_s": NOISE_TAU_S, "fade_steps": list(NOISE_FADE)}
        if noise > 0 else None,
        "meet_jitter_m": meet_jitter,
        "recovery": {"policy": recover_label, "takeover_steps": list(recover[2])}
        if recover is not None else None,
        "kept": kept,
        "failed": failed,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m faster_ros.sim.record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (lerobot/, bags/, summary.json)")
    p.add_argument("--episodes", type=int, default=50, help="successful demos to keep")
    p.add_argument("--seed-start", type=int, default=1000, help="first box-pose seed")
    p.add_argument("--max-attempts", type=int, default=None, help="default 3 x episodes")
    p.add_argument("--image-size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    p.add_argument("--no-bags", action="store_true", help="LeRobot dataset only")
    p.add_argument(
        "--frame-every",
        type=int,
        default=FRAME_EVERY,
        help="render every Nth step (2: 25 fps video, the camera rate of the config)",
    )
    p.add_argument("--noise", type=float, default=0.0, metavar="RAD",
                   help="DART: perturb the arms during the approach by this much (std, rad); "
                        "the recorded actions stay the expert's")
    p.add_argument("--recover", default=None, metavar="POLICY",
                   help="recovery demonstrations (one DAgger round): POLICY drives the first "
                        "steps of each episode, then the expert does the task from there; only "
                        "the expert's part is recorded")
    p.add_argument("--takeover", type=int, nargs=2, default=[8, 120], metavar=("FIRST", "LAST"),
                   help="with --recover: the expert takes over at a seeded step in FIRST..LAST")
    p.add_argument("--meet-jitter", type=float, default=0.0, metavar="M",
                   help="hand over at a seeded point up to M metres (per axis) from the nominal "
                        "meeting point, so the left arm's grasp follows the cube (e.g. 0.04)")
    args = p.parse_args(argv)
    recover = None
    if args.recover:
        import torch

        from faster_ros.embodiment import load_embodiment
        from faster_ros.inference import check_policy_matches, load_policy

        first, last = args.takeover
        if args.noise > 0:
            p.error("--recover and --noise are separate recipes: give one")
        if not 0 <= first <= last:
            p.error(f"--takeover needs 0 <= FIRST <= LAST, got {first} {last}")
        torch.set_num_threads(1)
        emb = load_embodiment("aloha_sim")
        policy = load_policy(args.recover, emb.policy.tokenizer or "", "cpu", True, emb)
        check_policy_matches(policy, emb)
        recover = (policy, emb, (first, last))
    s = generate(
        Path(args.out),
        args.episodes,
        args.seed_start,
        args.max_attempts,
        tuple(args.image_size),
        bags=not args.no_bags,
        frame_every=args.frame_every,
        noise=args.noise,
        recover=recover,
        recover_label=args.recover or "",
        meet_jitter=args.meet_jitter,
    )
    print(json.dumps({k: v for k, v in s.items() if k not in ("kept", "failed")}, indent=2))
    return 0 if s["episodes_kept"] >= args.episodes else 1


if __name__ == "__main__":
    raise SystemExit(main())
