"""Labelled frames for an object locator on the ALOHA sim, and the command that trains one
(``faster-ros sim-locator``).

Two kinds of frame, both rendered from the top camera, each labelled with the cube's (x, y, z)
in metres:

* rollouts: the scripted hand-over on fresh seeded cube poses (seeds far from the
  demonstrations' and the evaluation's), a frame every ``every`` steps: the cube on the table,
  in the right gripper, in the air, in both grippers, dropped (the expert fails in about 3 of
  10 episodes, which only adds views);
* table frames: the cube at a fresh pose with both arms at a random demonstration state
  (:func:`faster_ros.sim.vision.render_labelled`), so the arms' pose says nothing about where
  the cube is.

    faster-ros sim-locator --demos DATA/lerobot --out runs/aloha/locator
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm import tqdm

from faster_ros.policy.locator import LocatorConfig, train_locator
from faster_ros.sim.aloha import AlohaSim
from faster_ros.sim.scripted import TransferCubeExpert
from faster_ros.sim.vision import demo_states, render_labelled

ROLLOUT_SEED_START = 700_000  # far from the demonstrations (1000+), evaluation (0-49), sim-vision
TABLE_SEED_START = 800_000
# the top camera's rows / columns the cube is ever seen in (all phases of 150 demonstrations:
# rows 128-167, columns 118-203 of 240 x 320), with a margin: 96 x 128 pixels, no resize
ALOHA_CROP = (0.4, 0.3, 0.8, 0.7)
NAMES = ("cube_x", "cube_y", "cube_z")


def render_rollouts(sim: AlohaSim, episodes: int, prepare, *, every: int = 4,
                    steps: int = 400, seed_start: int = ROLLOUT_SEED_START,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(prepared frames (N, h, w, 3) uint8, cube xyz (N, 3)) from ``episodes`` scripted
    hand-overs, one frame every ``every`` steps."""
    if episodes < 1 or every < 1:
        raise ValueError(f"episodes and every must be positive, got {episodes}, {every}")
    images, labels = [], []
    for i in tqdm(range(episodes), desc="rollouts", disable=not progress, dynamic_ncols=True):
        sim.reset(seed=seed_start + i)
        expert = TransferCubeExpert(sim, steps)
        for t in range(steps):
            if t % every == 0:
                images.append(prepare(sim.render()))
                labels.append(sim.box_position()[:3].copy())
            sim.step(expert.act(t))
    return np.stack(images), np.asarray(labels, np.float32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faster-ros sim-locator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demos", required=True, help="demonstrations (arm poses for table frames)")
    p.add_argument("--out", required=True, help="folder for locator.safetensors + locator.json")
    p.add_argument("--rollouts", type=int, default=150)
    p.add_argument("--every", type=int, default=4, help="a rollout frame every N steps")
    p.add_argument("--table-frames", type=int, default=12000)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = LocatorConfig(camera="top", names=NAMES, crop=ALOHA_CROP, height=96, width=128)
    sim = AlohaSim()
    try:
        rollout_images, rollout_labels = render_rollouts(sim, args.rollouts, cfg.prepare,
                                                         every=args.every)
        table_images, table_xy = render_labelled(sim, demo_states(args.demos),
                                                 args.table_frames, cfg.prepare,
                                                 seed_start=TABLE_SEED_START, seed=args.seed,
                                                 labels="xyz")
    finally:
        sim.close()
    # validation frames first (train_locator holds out the head): a mix of both kinds
    rng = np.random.default_rng(args.seed)
    images = np.concatenate([rollout_images, table_images])
    labels = np.concatenate([rollout_labels, table_xy])
    order = rng.permutation(len(images))
    model, report = train_locator(cfg, images[order], labels[order], steps=args.steps,
                                  batch_size=args.batch_size, seed=args.seed)
    command = "faster-ros sim-locator " + " ".join(sys.argv[1:] if argv is None else argv)
    model.save(args.out, task="cube xyz (m) on the ALOHA sim", demos=str(args.demos),
               rollouts=args.rollouts, every=args.every, table_frames=args.table_frames,
               frames=len(images), steps=args.steps, batch_size=args.batch_size,
               val_error=round(report.val_error, 5), val_error_p90=round(report.val_error_p90, 5),
               per_output_mae=[round(x, 5) for x in report.per_output_mae],
               history=[list(h) for h in report.history],
               wall_time_s=round(report.wall_time_s, 1), command=command)
    print(json.dumps(dict(out=args.out, frames=len(images),
                          val_error_cm=round(report.val_error * 100, 2),
                          val_error_p90_cm=round(report.val_error_p90 * 100, 2),
                          per_output_mae_cm=[round(x * 100, 2) for x in report.per_output_mae],
                          wall_time_s=round(report.wall_time_s, 1))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
