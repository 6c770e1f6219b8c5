"""Offline evaluation of a FASTerVLA policy on held-out episodes, next to simple baselines.

For every window (episode, t) of the held-out episodes, the policy predicts the chunk
a_t .. a_{t+H-1} from the frame and state at t; the error is the mean absolute error per element
in physical units (rad for the arm joints, hand units for the hands), over the whole chunk and
over its first k steps. Baselines on the same windows:

    hold_state        predict the current state s_t for all H steps (hold position; only
                      when the state is in action coordinates, as on the G1)
    hold_last_action  predict the previous command a_{t-1} for all H steps (a_t at t = 0)
    tokenizer_oracle  decode(encode(ground truth)): the floor set by the action tokenizer

    python -m faster_ros.policy.evaluate --model g1_inspire_vla --data /work/shared/data/g1_inspire
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from faster_ros.policy.data import PolicyDataset
from faster_ros.policy.modeling import FASTerVLA

FIRST_STEPS = (1, 5, 10)


def _errors(pred: np.ndarray, truth: np.ndarray, groups: dict[str, np.ndarray]) -> dict:
    """pred / truth (M, H, D) -> mean abs error overall, per first-k steps and per group."""
    err = np.abs(pred - truth)  # (M, H, D)
    out: dict[str, float] = {"mae": float(err.mean())}
    for k in FIRST_STEPS:
        if k <= err.shape[1]:
            out[f"mae@{k}"] = float(err[:, :k].mean())
    for name, idx in groups.items():
        out[f"mae_{name}"] = float(err[..., idx].mean())
    return out


@torch.no_grad()
def evaluate(model: FASTerVLA, episodes: Sequence[Any], *, stride: int = 8,
             batch_size: int = 64, greedy: bool = True, groups: dict[str, Sequence[int]] |
             None = None, cache_dir: str | None = None) -> dict[str, Any]:
    """Policy vs baselines on ``episodes`` (never trained on). Returns a dict of metrics."""
    model.eval()
    tok = model.action_tokenizer
    data = PolicyDataset(episodes, tok, model.processor, stride=stride, cache_dir=cache_dir,
                         instruction=model.provenance.get("instruction"), anchor=model.anchor)
    lags = model.config.state_history_s
    groups = {k: np.asarray(v) for k, v in (groups or {}).items()}
    truth = data.actions  # (M, H, D)
    last = np.stack([np.broadcast_to(data.episodes[e].actions[max(t - 1, 0)], truth.shape[1:])
                     for e, t in data.index])
    preds, invalid, passes = [], 0, 0
    start = time.perf_counter()
    for i in range(0, len(data), batch_size):
        batch = data.collate(range(i, min(i + batch_size, len(data))))
        batch = {k: v.to(model.device) for k, v in batch.items()}
        result = model.decode_batch(batch["pixels"], batch["input_ids"], batch["text_valid"],
                                    greedy=greedy)
        passes = result.passes
        tokens = result.tokens.cpu()
        bad = torch.tensor([bool(r) for r in result.invalid])
        invalid += int(bad.sum())
        tokens[bad] = 0  # invalid chunks are counted, and scored as hold-last-action
        states = np.stack([data.state(k) for k in range(i, i + len(tokens))])
        history = (np.stack([data.history(k) for k in range(i, i + len(tokens))]) if lags
                   else None)
        _, actions = model.tokens_to_actions(tokens, states, history)
        for j in torch.nonzero(bad).flatten().tolist():
            actions[j] = last[i + j]
        preds.append(actions)
    wall = time.perf_counter() - start
    pred = np.concatenate(preds)
    baselines = {"hold_last_action": _errors(last, truth, groups)}
    if data.episodes[0].state.shape[1] == truth.shape[2]:  # state in action coordinates
        hold = np.stack([np.broadcast_to(data.state(i), truth.shape[1:])
                         for i in range(len(data))])
        baselines["hold_state"] = _errors(hold, truth, groups)
    states = np.stack([data.state(i) for i in range(len(data))])
    history = np.stack([data.history(i) for i in range(len(data))]) if lags else None
    offset = model.anchor(states, history)  # (M, H, D): what the codes are relative to
    if model.prior is not None:  # the anchor alone (state + motion prior), without the codes
        low, high = model.action_low.cpu().numpy(), model.action_high.cpu().numpy()
        baselines["motion_prior"] = _errors(np.clip(offset, low, high), truth, groups)
    rel = torch.as_tensor(truth - offset)
    oracle = np.concatenate([tok.decode(tok.encode(rel[i: i + 512])).numpy()
                             for i in range(0, len(truth), 512)]) + offset
    return dict(
        windows=len(data), episodes=[ep.name for ep in data.episodes], stride=stride,
        decoding="greedy" if greedy else "sampled", block_size=model.config.block_size,
        passes_per_chunk=passes, invalid_chunks=invalid,
        seconds_per_chunk=wall / max(len(data), 1),
        policy=_errors(pred, truth, groups), **baselines,
        tokenizer_oracle=_errors(oracle, truth, groups))


def format_table(metrics: dict[str, Any]) -> str:
    rows = [r for r in ("policy", "hold_state", "hold_last_action", "motion_prior",
                        "tokenizer_oracle")
            if r in metrics]
    keys = list(metrics["policy"])
    lines = ["| predictor | " + " | ".join(keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(f"{metrics[r][k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)


def dimension_groups(names: Sequence[str]) -> dict[str, list[int]]:
    """Arms (joint angles, rad) vs hands (0..1) by dimension name, for the G1 layout."""
    hands = [i for i, n in enumerate(names) if "Hand" in n]
    arms = [i for i in range(len(names)) if i not in hands]
    return {"arms_rad": arms, "hands": hands} if hands else {}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faster_ros.policy.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="policy dir or shipped model name")
    p.add_argument("--data", required=True)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--sample", action="store_true", help="top-k sampling instead of greedy")
    p.add_argument("--decode-levels", type=int, default=None,
                   help="residual codebooks decoded (default: the model's config; 0: all)")
    p.add_argument("--cache-dir", default="runs/frame_cache")
    p.add_argument("--json", default=None, help="write the metrics here")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from faster_ros.data import read_episodes

    model = FASTerVLA.from_pretrained(args.model, device=args.device)
    if args.decode_levels is not None:
        model.set_decoding(decode_levels=args.decode_levels)
    held = {n.rsplit("/", 1)[-1] for n in model.provenance.get("heldout_episodes", [])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = [ep for ep in read_episodes(args.data) if ep.name.rsplit("/", 1)[-1] in held]
    if not episodes:
        raise SystemExit("no held-out episodes of the model found in --data")
    metrics = evaluate(model, episodes, stride=args.stride, batch_size=args.batch_size,
                       greedy=not args.sample, groups=dimension_groups(episodes[0].action_names),
                       cache_dir=args.cache_dir)
    levels = model.config.decode_levels or model.config.codebooks
    print(f"{metrics['windows']} windows from {len(metrics['episodes'])} held-out episodes, "
          f"{metrics['decoding']} decoding, {metrics['passes_per_chunk']} passes/chunk, "
          f"{levels} of {model.config.codebooks} codebooks decoded, "
          f"{metrics['invalid_chunks']} invalid chunks")
    print(format_table(metrics))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
