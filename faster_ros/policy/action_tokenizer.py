"""A FASTerVQ tokenizer of state-relative action chunks, for ``relative_to_state`` policies.

For joint-position robots openpi's pi0 / pi0-FAST tokenise actions relative to the current
state (its ``DeltaActions`` transform): the chunk a_t .. a_{t+H-1} becomes a_{t+k} - s_t, so
"no motion" is the zero chunk wherever the robot stands, and a policy generalises across
positions it never visited. A relative chunk depends on the start step t, not only on the
episode, so it cannot come from the per-episode windows of ``faster_ros.tokenizer.train``; this
module fits the same :class:`faster_ros.tokenizer.FASTerVQ` (same config class, loss and
training recipe: AdamW, cosine with warm-up, clipping) on relative windows of the training
episodes and records ``relative_to_state`` and the held-out episodes in its provenance.

    python -m faster_ros.policy.action_tokenizer --data /work/shared/data/g1_inspire \
        --embodiment g1_inspire --out runs/g1_rel_vq --steps 1500
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from faster_ros.data.episode import chunk_windows, split_episodes
from faster_ros.policy.configuration import relative_mask
from faster_ros.policy.data import draw_windows, start_probabilities


def relative_windows(episodes: Sequence, chunk_size: int, stride: int = 1,
                     absolute_dims: Sequence[int] = ()) -> np.ndarray:
    """(M, H, D) float32 windows a_{t..t+H-1} - s_t of every episode with state; the
    ``absolute_dims`` keep their absolute values."""
    out = []
    for ep in episodes:
        if ep.state is None:
            continue
        mask = relative_mask(ep.actions.shape[1], absolute_dims)
        out += [chunk - ep.state[t] * mask
                for t, chunk in chunk_windows(ep.actions, chunk_size, stride)]
    return np.stack(out).astype(np.float32)


def window_starts(episodes: Sequence, chunk_size: int, stride: int = 1) -> np.ndarray:
    """(M,) start time in seconds of each window :func:`relative_windows` returns, same order."""
    return np.array([t / ep.fps for ep in episodes if ep.state is not None
                     for t, _ in chunk_windows(ep.actions, chunk_size, stride)], np.float64)


def absolute_dims_for(names: Sequence[str], patterns: Sequence[str]) -> list[int]:
    """Indices of the action dimensions whose name contains one of ``patterns`` (e.g.
    "gripper"); a pattern that matches nothing is an error."""
    dims = []
    for pattern in patterns:
        found = [i for i, n in enumerate(names) if pattern in n]
        if not found:
            raise ValueError(f"--absolute {pattern!r} matches no action dimension of "
                             f"{list(names)}")
        dims += found
    return sorted(set(dims))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faster_ros.policy.action_tokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--embodiment", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="small")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--heldout-fraction", type=float, default=0.1)
    p.add_argument("--like", default=None, metavar="TOKENIZER",
                   help="hold out exactly the episodes this tokenizer held out (a FASTerVQ or a "
                        "baseline codec), e.g. to compare tokenisations on one split")
    p.add_argument("--absolute", nargs="*", default=[], metavar="PATTERN",
                   help="action dimensions whose name contains PATTERN stay absolute (openpi's "
                        "delta mask; e.g. gripper)")
    p.add_argument("--start-weight", type=float, nargs=2, default=(1.0, 0.0),
                   metavar=("WEIGHT", "SECONDS"),
                   help="windows starting within SECONDS of their episode's start are drawn "
                        "WEIGHT times as often, so the codebooks also cover the small, "
                        "pose-dependent motions of the start")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="VQConfig override (int / float / str)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from faster_ros.data import read_episodes
    from faster_ros.embodiment import load_embodiment
    from faster_ros.tokenizer import FASTerVQ, VQConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    emb = load_embodiment(args.embodiment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = read_episodes(args.data)
    if args.like:
        from faster_ros.policy.modeling import open_action_tokenizer
        from faster_ros.policy.train import split_by_tokenizer

        train, held = split_by_tokenizer(episodes, open_action_tokenizer(args.like))
    else:
        train, held = split_episodes(episodes, args.heldout_fraction, "last")  # as the tokenizer
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        overrides[key] = value
    cfg = VQConfig.from_embodiment(emb, preset=args.preset, steps=args.steps,
                                   batch_size=args.batch_size, seed=args.seed, **overrides)
    absolute = absolute_dims_for(cfg.dim_names, args.absolute)
    cfg = cfg.replace(provenance=dict(
        relative_to_state=True, absolute_dims=absolute, start_weight=list(args.start_weight),
        absolute_names=[cfg.dim_names[d] for d in absolute], data=str(args.data),
        steps=args.steps, train_episodes=[ep.name for ep in train],
        heldout_episodes=[ep.name for ep in held]))
    windows = relative_windows(train, cfg.chunk_size, absolute_dims=absolute)
    held_windows = relative_windows(held, cfg.chunk_size, stride=8, absolute_dims=absolute)
    try:
        probs = start_probabilities(window_starts(train, cfg.chunk_size),
                                    tuple(args.start_weight))
    except ValueError as exc:
        p.error(f"--start-weight: {exc}")
    model = FASTerVQ(cfg)
    model.fit_normalizer(windows.reshape(-1, cfg.action_dim))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas,
                            weight_decay=cfg.weight_decay)
    warm = min(cfg.warmup_steps, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(
            math.pi * (s - warm) / max(args.steps - warm, 1)))))
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(f"relative FASTerVQ: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
          f"{len(windows)} train / {len(held_windows)} held-out windows", flush=True)
    for step in range(1, args.steps + 1):
        model.train()
        batch = torch.as_tensor(windows[draw_windows(rng, probs, args.batch_size)])
        out = model(batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            recon = model.decode(model.encode(torch.as_tensor(held_windows))).numpy()
            mae = float(np.abs(recon - held_windows).mean())
            print(f"step {step} loss {float(out.loss.detach()):.4f} held-out MAE {mae:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    model.save(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
