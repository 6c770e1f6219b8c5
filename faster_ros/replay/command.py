"""``faster-ros replay`` and ``faster-ros record``: argument parsing and the top-level flow.

    faster-ros replay BAG --embodiment g1_inspire [--model M] [--out DIR]   offline check
    faster-ros replay BAG --embodiment g1_inspire --tokenizer-only          tokenizer vs FAST
    faster-ros replay BAG --embodiment g1_inspire --publish --rate 0.5      play on /clock
    faster-ros record OUT --embodiment g1_inspire [--storage mcap]          record the stack

A bag that cannot be used (missing topics, unknown types, truncated or corrupt file, cameras and
joints that never overlap) gives one line naming the problem on stderr, exit status 2, and no
output files. Only argparse is imported here, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_BAG = 2
EXIT_NO_RESULT = 3


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="rosbag2 directory or .db3 / .mcap file")
    p.add_argument("--embodiment", required=True, help="embodiment name or config YAML path")
    p.add_argument("--model", default=None, help="policy dir or shipped name (default: the "
                   "embodiment's policy.model)")
    p.add_argument("--tokenizer", default=None, help="tokenizer override")
    p.add_argument("--out", default=None, help="report folder (default out/replay/<bag>)")
    p.add_argument("--action-topic", default=None, help="command topic to compare with "
                   "(default: config replay.action_topic if in the bag, else future joint "
                   "states)")
    p.add_argument("--start", type=float, default=0.0, help="seconds into the bag to start")
    p.add_argument("--duration", type=float, default=None, help="seconds of the bag to use")
    p.add_argument("--max-chunks", type=int, default=None, help="stop after N chunks")
    p.add_argument("--instruction", default=None, help="language instruction (default: the "
                   "embodiment's)")
    p.add_argument("--sample", action="store_true", help="sample like the model's config "
                   "(default: deterministic, greedy decoding with a fixed seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--tokenizer-only", action="store_true",
                   help="check only the tokenizer on the bag's recorded actions, next to FAST")
    p.add_argument("--publish", action="store_true",
                   help="play the bag into the live graph on sim time (/clock)")
    p.add_argument("--rate", type=float, default=1.0, help="--publish: playback rate")
    p.add_argument("--loop", action="store_true", help="--publish: start again at the end")
    p.add_argument("--topic", action="append", dest="topics", default=None,
                   help="--publish: play this topic (repeatable; default: the embodiment's "
                   "cameras and joint inputs)")
    p.add_argument("--wait-subscribers", type=float, default=0.0,
                   help="--publish: seconds to wait for a subscriber on every topic first")


def error(message: str, code: int) -> int:
    print(f"faster-ros: error: {message}", file=sys.stderr)
    return code


def run_replay(args: argparse.Namespace) -> int:
    """`faster-ros replay` offline (``--publish`` runs faster_ros.ros.bag_publisher instead)."""
    from faster_ros.data.bag_io import BagError
    from faster_ros.embodiment import load_embodiment
    from faster_ros.replay.bag import load_inputs

    emb = load_embodiment(args.embodiment)
    try:
        inputs = load_inputs(args.bag, emb, action_topic=args.action_topic,
                             start_s=args.start, duration_s=args.duration)
    except BagError as exc:
        return error(str(exc), EXIT_BAD_BAG)
    out = Path(args.out or Path("out") / "replay" / Path(args.bag).name)
    if args.tokenizer_only:
        from faster_ros.replay.tokenizer_check import run_tokenizer_check

        try:
            return run_tokenizer_check(inputs, args, out)
        except ValueError as exc:
            return error(str(exc), EXIT_NO_RESULT)
    return _replay_policy(inputs, args, out)


def _replay_policy(inputs, args, out: Path) -> int:
    import numpy as np
    import torch

    from faster_ros.inference import check_policy_matches, load_policy
    from faster_ros.replay.metrics import replay_figures
    from faster_ros.replay.offline import run_offline
    from faster_ros.replay.report import write_report

    emb = inputs.embodiment
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or emb.policy.model
    if not model:
        return error(f"no model: pass --model (embodiment {emb.name} names none)",
                      EXIT_NO_RESULT)
    deterministic = not args.sample
    try:
        policy = load_policy(model, args.tokenizer or emb.policy.tokenizer or "", args.device,
                             deterministic, emb)
        check_policy_matches(policy, emb)
    except Exception as exc:
        return error(f"model {model!r} failed to load: {type(exc).__name__}: {exc}",
                      EXIT_NO_RESULT)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if callable(getattr(policy, "reset", None)):
        policy.reset(seed=args.seed)
    run = run_offline(inputs, policy, instruction=args.instruction, max_chunks=args.max_chunks,
                      progress=not args.no_progress)
    if not any(c.published for c in run.chunks):
        why = "; ".join(f"{n}x {r}" for r, n in run.failures.most_common(3)) or "; ".join(
            sorted({c.problem for c in run.chunks}))
        return error(f"{inputs.path}: no chunk could be produced from {run.attempts} "
                      f"attempts: {why}", EXIT_NO_RESULT)
    figures = replay_figures(run, emb, inputs.commands, inputs.states, inputs)
    report = {
        "bag": str(inputs.path),
        "embodiment": emb.name,
        "model": str(model),
        "decoding": f"greedy (deterministic), seed {args.seed}" if deterministic
        else f"sampled, seed {args.seed}",
        "bag_span_s": [inputs.start, inputs.end],
        "notes": inputs.notes,
        "figures": figures,
        "chunks": [{"stamp": c.stamp, "now": c.now, "problem": c.problem,
                    "invalid_tokens": c.invalid_tokens,
                    "total_ms": c.timing.get("total_ms"),
                    "codes": None if c.codes is None else c.codes.reshape(-1).tolist()}
                   for c in run.chunks],
    }
    files = write_report(out, report, emb=emb, inputs=inputs, run=run)
    err, lat = figures["error"], figures["latency"]
    print(f"{figures['published']} chunks from {inputs.path.name} vs {figures['compared_with']}: "
          f"mae {err['mae']:.4f} (hold state {figures['hold_state'].get('mae', float('nan')):.4f}"
          f", hold last command {figures['hold_last_command'].get('mae', float('nan')):.4f})"
          f", VRR@1e-2 {err['vrr@0.01']:.3f}, VRR@1e-3 {err['vrr@0.001']:.3f}, latency p50 "
          f"{lat.get('p50_ms', float('nan')):.1f} ms, invalid tokens "
          f"{figures['invalid_tokens']['total']}")
    if figures.get("end_effector"):
        from faster_ros.replay.end_effector import summary_line

        print("end effectors vs " + figures["end_effector"]["compared_with"] + ": "
              + summary_line(figures["end_effector"]))
    print("report: " + ", ".join(str(f) for f in files))
    return 0
