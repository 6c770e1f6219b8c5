"""Where a sim policy fails, measured without the ROS stack (faster_ros.sim.policy_loop's loop).

    python bench/sim_probes.py prefix --model aloha_sim_vla --episodes 20 --steps 0 48 96 200 250
    python bench/sim_probes.py first-chunk --model aloha_sim_vla --episodes 12

prefix       the scripted expert drives the first N steps of each seeded episode, then the policy
             (greedy, ``execute_steps`` per chunk) takes over: touched / lifted / left-touch /
             strict rates per N. A policy that only fails early rises fast with N.
first-chunk  the policy's first chunk from the start pose, per seed: how far its right tool point
             at the chunk's last step is from the expert's, how much it varies across cube poses
             (against the expert's own spread), and how far a black frame moves it. A policy
             blind to the camera gives the same chunk for every seed.
Prints figures only.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import torch

from faster_ros.embodiment import load_embodiment
from faster_ros.inference import load_policy
from faster_ros.sim.aloha import AlohaSim
from faster_ros.sim.scripted import ArmIK, TransferCubeExpert


def observe(sim: AlohaSim, emb, frame=None):
    return SimpleNamespace(images={emb.cameras[0].name: sim.render() if frame is None else frame},
                           state=sim.qpos().astype(np.float32),
                           instruction=emb.policy.instruction, stamp=sim.time)


def prefix(policy, emb, sim: AlohaSim, seeds: range, prefix_steps: int, steps: int = 400) -> dict:
    reached, strict = [], 0
    for seed in seeds:
        sim.reset(seed=seed)
        expert, queue = TransferCubeExpert(sim, steps), []
        while sim.step_count < steps:
            if sim.step_count < prefix_steps:
                sim.step(expert.act(sim.step_count))
                continue
            if not queue:
                out = policy.predict_action_chunk(observe(sim, emb))
                queue = list(np.clip(out.actions, emb.lower, emb.upper)
                             [: emb.control.execute_steps])
            sim.step(queue.pop(0))
        outcome = sim.outcome()
        reached.append(outcome.max_reward)
        strict += outcome.strict
    r = np.asarray(reached)
    return dict(expert_steps=prefix_steps, episodes=len(r), touched=float((r >= 1).mean()),
                lifted=float((r >= 2).mean()), left_touch=float((r >= 3).mean()), strict=strict)


def first_chunk(policy, emb, sim: AlohaSim, seeds: range) -> dict:
    horizon = emb.tokenizer.chunk_size - 1
    ours, experts, blank = [], [], []
    ik = ArmIK(sim, "right")

    def tool(chunk) -> np.ndarray:  # right tool point at the chunk's last step
        return ik.pose(np.asarray(chunk)[horizon, 7:13])[0]

    for seed in seeds:
        sim.reset(seed=seed)
        expert = TransferCubeExpert(sim)
        frame = sim.render()
        ours.append(tool(policy.predict_action_chunk(observe(sim, emb, frame)).actions))
        blank.append(tool(policy.predict_action_chunk(
            observe(sim, emb, np.zeros_like(frame))).actions))
        experts.append(tool(expert.actions))
    ours, experts, blank = map(np.asarray, (ours, experts, blank))
    cm = lambda d: round(float(np.linalg.norm(d, axis=1).mean() * 100), 2)  # noqa: E731
    return dict(episodes=len(ours), chunk_step=horizon, error_cm=cm(ours - experts),
                mean_plan_error_cm=cm(experts - experts.mean(0)),
                spread_cm=cm(ours - ours.mean(0)), expert_spread_cm=cm(experts - experts.mean(0)),
                black_frame_shift_cm=cm(ours - blank))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probe", choices=("prefix", "first-chunk"))
    p.add_argument("--model", default="aloha_sim_vla")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 48, 96, 200, 250],
                   help="prefix: expert steps before the policy takes over")
    args = p.parse_args()
    torch.set_num_threads(1)
    emb = load_embodiment("aloha_sim")
    policy = load_policy(args.model, emb.policy.tokenizer or "", "cpu", True, emb)
    sim = AlohaSim()
    seeds = range(args.seed, args.seed + args.episodes)
    try:
        if args.probe == "prefix":
            for n in args.steps:
                print(json.dumps(dict(model=args.model, **prefix(policy, emb, sim, seeds, n))))
        else:
            print(json.dumps(dict(model=args.model, **first_chunk(policy, emb, sim, seeds))))
    finally:
        sim.close()


if __name__ == "__main__":
    main()
