"""Labelled frames for pretraining a policy's vision tower on the ALOHA sim, and the command
that runs the pretraining (``faster-ros sim-vision``).

Each frame: the cube at a fresh seeded pose (gym-aloha's sampler), both arms at a joint state
drawn from the demonstrations (so the arms stand where the policy will see them, and their pose
says nothing about where the cube is), rendered from the top camera and cropped / resized as the
policy's processor does. The label is the cube's (x, y) on the table in metres. No physics is
stepped: the pose is set and rendered (about 7 ms a frame here).

    faster-ros sim-vision --demos DATA/lerobot --out runs/aloha/vision64 --frames 24000
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from faster_ros.policy.configuration import PRESETS, FASTerVLAConfig
from faster_ros.policy.processor import resize_frame
from faster_ros.sim.aloha import AlohaSim

SEED_START = 500_000  # far from the demonstration (1000+) and evaluation (0-49) seeds


def render_labelled(sim: AlohaSim, states: np.ndarray, frames: int, resize, *,
                    seed_start: int = SEED_START, seed: int = 0, labels: str = "xy",
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` labelled frames: (images (N, ...) uint8 after ``resize``, the cube's
    ``labels`` coordinates ("xy" or "xyz"), (N, 2 or 3)). Frame i has the cube of seed
    ``seed_start + i`` and the arms at a random row of ``states`` (M, 14)."""
    if labels not in ("xy", "xyz"):
        raise ValueError(f"labels is 'xy' or 'xyz', got {labels!r}")
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[1] != 14 or len(states) == 0:
        raise ValueError(f"states must be (M, 14) with M > 0, got {states.shape}")
    rng = np.random.default_rng(seed)
    images, out = [], np.zeros((frames, len(labels)), np.float32)
    for i in tqdm(range(frames), desc="rendering", disable=not progress, dynamic_ncols=True):
        sim.reset(seed=seed_start + i)
        sim.set_qpos(states[rng.integers(len(states))])
        images.append(resize(sim.render()))
        out[i] = sim.box_position()[:len(labels)]
    return np.stack(images), out


def demo_states(demos: str | Path) -> np.ndarray:
    """Every joint state of a demonstration dataset (any format ``read_episodes`` reads)."""
    from faster_ros.data import read_episodes

    episodes = read_episodes(demos, load_frames=False)
    states = [ep.state for ep in episodes if ep.state is not None and len(ep.state)]
    if not states:
        raise ValueError(f"{demos}: no joint states in the demonstrations")
    return np.concatenate(states).astype(np.float64)


def main(argv: list[str] | None = None) -> int:
    from faster_ros.policy.vision_pretrain import pretrain_vision, save_vision

    p = argparse.ArgumentParser(prog="faster-ros sim-vision", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demos", required=True, help="demonstrations (arm poses are drawn from)")
    p.add_argument("--out", required=True, help="folder for vision.safetensors + vision.json")
    p.add_argument("--frames", type=int, default=24000)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--image-crop", type=float, nargs=4, default=None,
                   metavar=("TOP", "LEFT", "BOTTOM", "RIGHT"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = FASTerVLAConfig.preset(args.preset, image_size=args.image_size,
                                 image_crop=tuple(args.image_crop or ()))
    resize = partial(resize_frame, size=cfg.image_size, crop=cfg.image_crop)
    sim = AlohaSim()
    try:
        images, labels = render_labelled(sim, demo_states(args.demos), args.frames, resize,
                                         seed=args.seed)
    finally:
        sim.close()
    result = pretrain_vision(cfg, images, labels, steps=args.steps,
                             batch_size=args.batch_size, seed=args.seed)
    save_vision(args.out, cfg, result, task="cube xy (m) on the ALOHA sim table",
                demos=str(args.demos), frames=args.frames, seed_start=SEED_START,
                steps=args.steps, batch_size=args.batch_size,
                command="faster-ros sim-vision " + " ".join(sys.argv[1:] if argv is None
                                                            else argv))
    print(json.dumps(dict(out=args.out, val_error_cm=round(result.val_error * 100, 2),
                          val_error_p90_cm=round(result.val_error_p90 * 100, 2),
                          wall_time_s=round(result.wall_time_s, 1))))
    return 0
