"""Where a sim policy fails, measured without the ROS stack (faster_ros.sim.policy_loop's loop).

    python bench/sim_probes.py prefix --model aloha_sim_vla --episodes 20 --steps 0 48 96 200 250
    python bench/sim_probes.py first-chunk --model aloha_sim_vla --episodes 12
    python bench/sim_probes.py context --model aloha_sim_vla --episodes 300

prefix       the scripted expert drives the first N steps of each seeded episode, then the policy
             (greedy, through the executor as in the stack, starting from the expert's last
             command as from a teleoperator's) takes over: touched / lifted / left-touch /
             strict rates per N. A policy that only fails early rises fast with N.
first-chunk  the policy's first chunk from the start pose, per seed: how far its right tool point
             at the chunk's last step is from the expert's, how much it varies across cube poses
             (against the expert's own spread), and how far a black frame moves it. A policy
             blind to the camera gives the same chunk for every seed. ``--head``: the same for
             the chunk a ``--chunk-l1`` policy's auxiliary head regresses (what its context
             carries, without the codes).
handover     the expert drives the first N steps (default 200: the cube lifted), then the policy:
             per seed, how far the cube is from the nominal meeting point when the left arm
             re-aims (step 250; the expert's own cube for comparison), how far the left tool
             point is from its grasp target on the cube (cube + LEFT_REACH) at the close (step
             305), the right gripper's widest measured opening after the close, and the outcome.
context      at the start pose, how well the cube's (x, y) can be read linearly (ridge, the best
             of 4 penalties, fitted on the first 2/3 of the seeds, scored on the rest) from the
             image tokens and from the context the action expert reads: where the cube's
             position is lost, in the backbone or after it.
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
from faster_ros.sim.aloha import GRIPPER_INDEX, AlohaSim
from faster_ros.sim.policy_loop import drive, observe
from faster_ros.sim.scripted import LEFT_REACH, MEET, REAIM_STEP, ArmIK, TransferCubeExpert

STEPS = {"prefix": [0, 48, 96, 200, 250], "handover": [200]}  # default --steps per probe


def expert_prefix(sim: AlohaSim, seed: int, prefix_steps: int, steps: int
                  ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Reset to ``seed`` and let the scripted expert drive the first ``prefix_steps`` steps: (the
    state at every step so far, the expert's last action or None): the ``past`` and the
    ``command`` the direct loop takes over from."""
    past = [sim.reset(seed=seed)]
    expert = TransferCubeExpert(sim, steps)
    command = None
    while sim.step_count < min(prefix_steps, steps):
        command = expert.act(sim.step_count)
        sim.step(command)
        past.append(sim.qpos())
    return past, command


def prefix(policy, emb, sim: AlohaSim, seeds: range, prefix_steps: int, steps: int = 400) -> dict:
    reached, strict = [], 0
    for seed in seeds:
        past, command = expert_prefix(sim, seed, prefix_steps, steps)
        drive(sim, policy, emb, steps, [], past, command)  # the direct loop from here
        outcome = sim.outcome()
        reached.append(outcome.max_reward)
        strict += outcome.strict
    r = np.asarray(reached)
    return dict(expert_steps=prefix_steps, episodes=len(r), touched=float((r >= 1).mean()),
                lifted=float((r >= 2).mean()), left_touch=float((r >= 3).mean()), strict=strict)


class Recorded:
    """The sim, recording the cube's position after each step into ``boxes`` (step -> xyz)."""

    def __init__(self, sim: AlohaSim, boxes: dict):
        self._sim, self._boxes = sim, boxes

    def step(self, action):
        out = self._sim.step(action)
        self._boxes[self._sim.step_count] = self._sim.box_position()
        return out

    def __getattr__(self, name):
        return getattr(self._sim, name)


def handover(policy, emb, sim: AlohaSim, seeds: range, prefix_steps: int,
             steps: int = 400, close_step: int = 305) -> dict:
    left_ik = ArmIK(sim, "left")
    rows = []
    for seed in seeds:
        expert_prefix(sim, seed, REAIM_STEP, steps)  # the expert's own cube at the re-aim
        expert_cube = sim.box_position()
        past, command = expert_prefix(sim, seed, prefix_steps, steps)
        boxes = {}  # step -> cube position, recorded without cutting the policy's chunks
        drive(Recorded(sim, boxes), policy, emb, steps, [], past, command)
        cube = boxes[REAIM_STEP]
        left_tool = left_ik.pose(past[close_step][:6])[0]
        left_err = left_tool - (boxes[close_step] + LEFT_REACH)
        right_open = np.asarray(past)[close_step:, GRIPPER_INDEX["right"]]
        outcome = sim.outcome()
        rows.append(dict(seed=seed, cube_off_cm=np.round((cube - MEET) * 100, 1).tolist(),
                         expert_cube_off_cm=np.round((expert_cube - MEET) * 100, 1).tolist(),
                         left_err_cm=np.round(left_err * 100, 1).tolist(),
                         right_open_max=round(float(right_open.max()), 2),
                         reward=int(outcome.max_reward), strict=bool(outcome.strict)))
    cm = lambda key: round(float(np.mean([np.linalg.norm(r[key]) for r in rows])), 2)  # noqa: E731
    return dict(expert_steps=prefix_steps, episodes=len(rows), cube_off_cm=cm("cube_off_cm"),
                expert_cube_off_cm=cm("expert_cube_off_cm"), left_err_cm=cm("left_err_cm"),
                left_touch=float(np.mean([r["reward"] >= 3 for r in rows])),
                strict=int(sum(r["strict"] for r in rows)), per_seed=rows)


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


def context(policy, emb, sim: AlohaSim, seeds: range) -> dict:
    feats: dict[str, list] = {"image_tokens": [], "context": []}
    cube = []
    for seed in seeds:
        sim.reset(seed=seed)
        with torch.no_grad():
            pixels, ids, valid = policy.prepare(observe(sim, emb))
            image = policy.encode_images(pixels)
            ctx, _ = policy.encode_context(image, ids, valid)
        feats["image_tokens"].append(image[0].flatten().numpy())
        feats["context"].append(ctx[0].flatten().numpy())
        cube.append(sim.box_position()[:2])
    y = np.asarray(cube)
    n = 2 * len(y) // 3
    out = dict(episodes=len(y), fitted_on=n,
               mean_predictor_cm=round(float(np.linalg.norm(y[n:] - y[:n].mean(0),
                                                            axis=1).mean() * 100), 2))
    for name, rows in feats.items():
        x = np.asarray(rows, dtype=np.float64)
        x = (x - x[:n].mean(0)) / (x[:n].std(0) + 1e-6)
        gram, target = x[:n] @ x[:n].T, y[:n] - y[:n].mean(0)  # dual ridge: n x n, not D x D
        errors = []
        for penalty in (1.0, 10.0, 100.0, 1000.0):
            alpha = np.linalg.solve(gram + penalty * np.eye(n), target)
            pred = x[n:] @ (x[:n].T @ alpha) + y[:n].mean(0)
            errors.append(float(np.linalg.norm(pred - y[n:], axis=1).mean() * 100))
        out[f"{name}_cm"] = round(min(errors), 2)
        out[f"{name}_dims"] = x.shape[1]
    return out


class RegressedChunks:
    """A ``--chunk-l1`` policy answering with its auxiliary head's chunk instead of the codes."""

    def __init__(self, policy):
        self.policy = policy

    def predict_action_chunk(self, observation) -> SimpleNamespace:
        return SimpleNamespace(actions=self.policy.regressed_chunk(observation))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probe", choices=("prefix", "handover", "first-chunk", "context"))
    p.add_argument("--model", default="aloha_sim_vla")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--head", action="store_true",
                   help="first-chunk: probe the auxiliary chunk head instead of the codes")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="prefix, handover: expert steps before the policy takes over (default: "
                        f"{STEPS['prefix']}, {STEPS['handover']})")
    args = p.parse_args()
    torch.set_num_threads(1)
    emb = load_embodiment("aloha_sim")
    policy = load_policy(args.model, emb.policy.tokenizer or "", "cpu", True, emb)
    sim = AlohaSim()
    seeds = range(args.seed, args.seed + args.episodes)
    try:
        if args.probe == "prefix":
            for n in args.steps or STEPS["prefix"]:
                print(json.dumps(dict(model=args.model, **prefix(policy, emb, sim, seeds, n))))
        elif args.probe == "handover":
            for n in args.steps or STEPS["handover"]:
                print(json.dumps(dict(model=args.model, **handover(policy, emb, sim, seeds, n))))
        else:
            probe = first_chunk if args.probe == "first-chunk" else context
            if args.head:
                policy = RegressedChunks(policy)
            print(json.dumps(dict(model=args.model, head=args.head,
                                  **probe(policy, emb, sim, seeds))))
    finally:
        sim.close()


if __name__ == "__main__":
    main()
