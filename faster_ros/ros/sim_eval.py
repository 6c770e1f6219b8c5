"""Closed-loop task success in the ALOHA sim, with the whole stack in the loop.

    faster-ros sim-eval --model models/aloha_sim_vla --episodes 50 --out out/sim_eval/faster
    faster-ros sim-eval --table out/sim_eval/*/results.json
    faster-ros sim-eval --model M --no-stack  # quick screen, no ROS (faster_ros.sim.policy_loop)

Starts the aloha_sim graph as child processes (sim robot -> policy node -> executor -> sim), the
sim running ``episodes`` seeded episodes back to back (seeds ``seed`` .. ``seed + N - 1``, the same
for every model), and listens to the policy's chunks for the inference latency. The run gets its
own DDS world (a free ROS_DOMAIN_ID, discovery on this machine only), so no other stack on the
machine can cross-talk (its chunks, its /clock). Writes
``OUT/results.json``: the strict success rate with its 95% Wilson interval, the built-in
(lenient) success rate beside it, how many episodes reached ACT's sub-task stages (the right
gripper touched / lifted the cube), latency, wall time and every episode's result; and
``OUT/episode0.mp4``: the top camera during the first episode. ``--table`` prints the results of
several runs side by side (markdown), and ``--plot PNG`` draws them as bars.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

from faster_ros.scripted_policy import BUILTIN_PREFIX
from faster_ros.stats import mcnemar_exact, wilson_interval

STAGES = {"touched": 1, "lifted": 2, "left_touch": 3}  # gym-aloha reward reached


def summarize(results: list[dict], latencies_ms: list[float], label: str, wall_s: float) -> dict:
    n = len(results)
    strict = sum(bool(r["strict_success"]) for r in results)
    builtin = sum(bool(r["builtin_success"]) for r in results)
    lo, hi = wilson_interval(strict, n)
    lat = np.asarray(latencies_ms, dtype=np.float64)
    return {
        "label": label,
        "episodes": n,
        "seeds": [r["seed"] for r in results],
        "strict_success_rate": strict / n if n else 0.0,
        "strict_success_ci95": [round(lo, 4), round(hi, 4)],
        "strict_successes": strict,
        "builtin_success_rate": builtin / n if n else 0.0,
        "builtin_successes": builtin,
        # ACT's sub-task stages: the right gripper touched / lifted the cube at some step
        "stage_rates": {
            name: sum(r.get("max_reward", 0) >= level for r in results) / n if n else 0.0
            for name, level in STAGES.items()
        },
        "latency_ms": {
            "chunks": int(lat.size),
            "mean": round(float(lat.mean()), 2) if lat.size else None,
            "p50": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p95": round(float(np.percentile(lat, 95)), 2) if lat.size else None,
        },
        "sim_steps_per_s": round(float(np.mean([r["steps_per_s"] for r in results])), 1)
        if results
        else None,
        "wall_s": round(wall_s, 1),
        "results": results,
    }


def isolate_dds(domain_id: int | None = None) -> int:
    """Give this evaluation (this process and the nodes it starts) its own DDS world: discovery on
    this machine only and a ROS_DOMAIN_ID no other cooperating process holds (a lock file per id,
    the scheme of test/conftest.py), so another stack on the machine (its chunks, its /clock)
    cannot leak into the episodes. Returns the id; the lock lasts as long as this process."""
    import fcntl
    import os
    import random
    import tempfile

    if domain_id is None:
        lock_dir = Path(tempfile.gettempdir()) / "faster_ros_test_domains"
        lock_dir.mkdir(exist_ok=True)
        ids = list(range(1, 102))
        random.Random(os.getpid() ^ time.time_ns()).shuffle(ids)
        for candidate in ids:
            fd = os.open(lock_dir / f"{candidate}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            _HELD.append(fd)
            domain_id = candidate
            break
        else:
            raise RuntimeError(f"every ROS domain id 1..101 is locked in {lock_dir}")
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    return domain_id


_HELD: list[int] = []


def evaluate(
    model: str,
    out: Path,
    episodes: int = 50,
    seed: int = 0,
    episode_steps: int = 400,
    deterministic: bool = True,
    timeout_s: float | None = None,
    label: str | None = None,
    domain_id: int | None = None,
    real_time_factor: float = 0.5,
) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from faster_ros.embodiment import load_embodiment
    from faster_ros.graph import build_graph
    from faster_ros.ros.bringup import ProcessGraph
    from faster_ros.ros.monitor import MonitorNode

    domain_id = isolate_dds(domain_id)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "episodes.jsonl"
    results_path.unlink(missing_ok=True)
    frames_path = out / "episode0_frames.npz"
    emb = load_embodiment("aloha_sim")
    graph = build_graph(
        emb,
        sim=True,
        model=model,
        deterministic=deterministic,
        overrides={
            "sim_robot": {
                "episodes": episodes,
                "seed": seed,
                "episode_steps": episode_steps,
                "results_path": str(results_path),
                "record_frames": str(frames_path),
                "real_time_factor": real_time_factor,
            }
        },
    )
    timeout_s = timeout_s or 120.0 + episodes * episode_steps * 0.02 * 20
    context = rclpy.Context()
    rclpy.init(context=context)
    monitor = MonitorNode(emb, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(monitor)
    pg = ProcessGraph(graph, log_dir=out / "logs")
    t0 = time.monotonic()
    done = 0
    try:
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=f"sim-eval {label or model}", unit="ep")
        pg.start()
        while time.monotonic() - t0 < timeout_s:
            executor.spin_once(timeout_sec=0.1)
            n = len(results_path.read_text().splitlines()) if results_path.exists() else 0
            if n > done:
                bar.update(n - done)
                done = n
            if done >= episodes:
                break
            dead = [k for k, ok in pg.alive().items() if not ok]
            if dead:
                raise RuntimeError(f"node(s) {dead} exited; logs in {out / 'logs'}")
        bar.close()
    finally:
        pg.stop()
        executor.shutdown()
        monitor.destroy_node()
        rclpy.shutdown(context=context)
    wall = time.monotonic() - t0
    results = (
        [json.loads(line) for line in results_path.read_text().splitlines()]
        if (results_path.exists())
        else []
    )
    latencies = [m.t_total_ms for _, m in monitor.rec.chunks if m.t_total_ms > 0]
    summary = summarize(results, latencies, label or model, wall)
    summary["model"] = model
    status = monitor.rec.policy_status
    summary["chunks"] = {
        "published": len(monitor.rec.chunks),
        # not published by the policy node: invalid tokens (e.g. a FAST list that does not
        # decode), non-finite or out-of-range actions, or an inference error
        "refused_by_policy": int(status.chunks_rejected) if status is not None else None,
        "executor_verdicts": dict(Counter(m.verdict for _, m in monitor.rec.executions)),
    }
    summary["policy"] = policy_facts(model)
    summary["ros_domain_id"] = domain_id
    summary["real_time_factor_cap"] = real_time_factor
    summary["complete"] = len(results) >= episodes
    if frames_path.exists():
        from faster_ros.sim.record import write_video

        frames = np.load(frames_path)["frames"]
        cam = emb.cameras[0]
        write_video(out / "episode0.mp4", frames, fps=int(round(cam.rate_hz)))
        frames_path.unlink()
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def evaluate_no_stack(model: str, out: Path, episodes: int = 50, seed: int = 0,
                      episode_steps: int = 400, deterministic: bool = True,
                      label: str | None = None) -> dict:
    """:mod:`faster_ros.sim.policy_loop` on the same seeds, summarised like :func:`evaluate`."""
    import torch

    from faster_ros.embodiment import load_embodiment
    from faster_ros.inference import check_policy_matches, load_policy
    from faster_ros.sim.policy_loop import run_episodes

    torch.set_num_threads(1)  # a tiny model on a shared CPU: more threads wait on each other
    emb = load_embodiment("aloha_sim")
    policy = load_policy(model, emb.policy.tokenizer or "", "cpu", deterministic, emb)
    check_policy_matches(policy, emb)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results, latencies = run_episodes(policy, emb, list(range(seed, seed + episodes)),
                                      episode_steps)
    summary = summarize(results, latencies, f"{label or model} (no stack)",
                        time.monotonic() - t0)
    summary.update(model=model, policy=policy_facts(model), stack=False, complete=True,
                   chunks=no_stack_chunks(results))
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    return summary


def no_stack_chunks(results: list[dict]) -> dict:
    """The direct loop's chunk counts, in the stack's ``chunks`` schema (plus the kinds of the
    executor's rejections)."""
    verdicts: dict[str, int] = {}
    for r in results:
        for key, n in r.get("verdicts", {}).items():
            verdicts[key] = verdicts.get(key, 0) + n
    by_policy = sum(r.get("refused_by_policy", 0) for r in results)
    return {"published": sum(r["chunks"] for r in results) - by_policy,
            "refused_by_policy": by_policy, "executor_verdicts": verdicts}


def policy_facts(model: str) -> dict:
    """What the table shows of a saved policy: its action tokenisation, tokens per chunk and
    training steps / wall time / runs over its whole lineage (its config.json and policy.json,
    :func:`faster_ros.policy.lineage.training_runs`); {} for a builtin."""
    if model.startswith(BUILTIN_PREFIX):
        return {}
    from faster_ros.paths import model_path
    from faster_ros.policy.action_codecs import CODEC_FILE, is_codec_dir
    from faster_ros.policy.configuration import FASTerVLAConfig
    from faster_ros.policy.lineage import totals, training_runs

    root = model_path(model)
    cfg = FASTerVLAConfig.load(root / "config.json")
    meta = json.loads((root / "policy.json").read_text())
    lineage = totals(training_runs(root))
    ref = meta.get("action_tokenizer", "")
    codec = root / ref
    kind = (json.loads((codec / CODEC_FILE).read_text())["kind"]
            if ref and is_codec_dir(codec) else "fastervq")
    return {
        "action_tokens": kind,
        "tokens_per_chunk": cfg.tokens_per_chunk,
        "train_steps": lineage["steps"],
        "train_wall_s": lineage["wall_time_s"],
        "train_runs": lineage["runs"],
    }


def load_row(spec: str) -> dict:
    """One table row: a results.json, or several joined by ``+`` (the same policy on disjoint
    seed ranges, e.g. run on two machines) pooled by :func:`pool`."""
    parts = [json.loads(Path(p).read_text()) for p in spec.split("+")]
    return parts[0] if len(parts) == 1 else pool(parts)


def pool(parts: list[dict]) -> dict:
    """Results of one policy on disjoint seed ranges as one: the episodes concatenated and the
    rates and interval recomputed; the latency percentiles are the larger of the parts' (the raw
    latencies are not kept), the mean is chunk-weighted. A ValueError names what does not match."""
    facts = {json.dumps(r.get("policy") or {}, sort_keys=True) for r in parts}
    if len(facts) > 1:
        raise ValueError("sim-eval --table A+B: the parts are different policies "
                         f"({', '.join(r['label'] for r in parts)})")
    seen: set[int] = set()
    for r in parts:
        if seen & set(r["seeds"]):
            raise ValueError(f"sim-eval --table A+B: seeds {sorted(seen & set(r['seeds']))} "
                             f"are in two parts; pool disjoint seed ranges only")
        seen |= set(r["seeds"])
    results = [e for r in parts for e in r["results"]]
    out = summarize(results, [], " + ".join(dict.fromkeys(r["label"] for r in parts)),
                    sum(r["wall_s"] for r in parts))
    lats = [r["latency_ms"] for r in parts if r["latency_ms"].get("chunks")]
    n = sum(lat["chunks"] for lat in lats)
    out["latency_ms"] = {
        "chunks": n,
        "mean": round(sum(lat["mean"] * lat["chunks"] for lat in lats) / n, 2) if n else None,
        "p50": max(lat["p50"] for lat in lats) if n else None,
        "p95": max(lat["p95"] for lat in lats) if n else None,
    }
    out.update(policy=parts[0].get("policy"), pooled_from=len(parts))
    return out


def paired(a: dict, b: dict) -> dict:
    """Strict successes of two results on the seeds both ran: how many both / only ``a`` / only
    ``b`` solved, and the exact McNemar p-value (:func:`faster_ros.stats.mcnemar_exact`)."""
    sa = {e["seed"]: bool(e["strict_success"]) for e in a["results"]}
    sb = {e["seed"]: bool(e["strict_success"]) for e in b["results"]}
    shared = sorted(sa.keys() & sb.keys())
    only_a = sum(sa[s] and not sb[s] for s in shared)
    only_b = sum(sb[s] and not sa[s] for s in shared)
    return dict(seeds=len(shared), both=sum(sa[s] and sb[s] for s in shared), only_a=only_a,
                only_b=only_b, p=mcnemar_exact(only_a, only_b))


def pvalue(p: float) -> str:
    return f"= {p:.3f}" if p >= 0.001 else "< 0.001"


def table(paths: list[str]) -> str:
    """A markdown table of results (``A.json+B.json`` pools seed ranges), then each row after the
    first paired with the first on their shared seeds."""
    rows = [load_row(p) for p in paths]
    lines = [
        "| policy | action tokens | tokens / chunk | training (steps, min) | episodes "
        "| strict success (95% CI) | built-in flag | touched / lifted | latency p50 / p95 (ms) "
        "| wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["strict_success_ci95"]
        lat = r["latency_ms"]
        pol = r.get("policy") or {}
        wall = pol.get("train_wall_s")
        runs = pol.get("train_runs", 1)
        train = (f"{pol.get('train_steps')}{f' ({runs} runs)' if runs > 1 else ''}, "
                 f"{wall / 60:.1f}" if wall else "-")
        st = r.get("stage_rates")
        stages = f"{st['touched']:.0%} / {st['lifted']:.0%}" if st else "-"
        lines.append(
            f"| {r['label']} | {pol.get('action_tokens', '-')} | "
            f"{pol.get('tokens_per_chunk', '-')} | {train} | {r['episodes']} | "
            f"{r['strict_success_rate']:.0%} [{lo:.0%}, {hi:.0%}] | "
            f"{r['builtin_success_rate']:.0%} | {stages} | {lat['p50']} / {lat['p95']} | "
            f"{r['wall_s']} |"
        )
    for r in rows[1:]:
        c = paired(rows[0], r)
        if c["seeds"]:
            lines.append(
                f"\n{r['label']} against {rows[0]['label']} on their {c['seeds']} shared seeds: "
                f"both succeed on {c['both']}, only the first on {c['only_a']}, only this one on "
                f"{c['only_b']} (exact McNemar p {pvalue(c['p'])})")
    return "\n".join(lines)


def plot(paths: list[str], out: Path) -> Path:
    """Grouped bars per policy: ACT's stages (right gripper touched / lifted the cube) and the
    strict success with its 95% Wilson interval, on the same seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [load_row(p) for p in paths]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 3.6))
    bars = [("touched", [r.get("stage_rates", {}).get("touched", 0.0) for r in rows]),
            ("lifted", [r.get("stage_rates", {}).get("lifted", 0.0) for r in rows]),
            ("strict success", [r["strict_success_rate"] for r in rows])]
    for k, (name, values) in enumerate(bars):
        ax.bar(x + (k - 1) * 0.27, values, 0.27, label=name)
    strict = np.array(bars[2][1])
    ci = np.array([r["strict_success_ci95"] for r in rows])
    ax.errorbar(x + 0.27, strict, yerr=[strict - ci[:, 0], ci[:, 1] - strict], fmt="none",
                ecolor="k", capsize=3, lw=1)
    names = [textwrap.fill(r["label"], 24) for r in rows]  # long labels wrap, not overlap
    ax.set_xticks(x, [f"{name}\n({r['episodes']} ep.)" for name, r in zip(names, rows)],
                  fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction of episodes")
    ax.set_title("ALOHA transfer-cube, stack in the loop", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="faster-ros sim-eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="policy model dir, shipped name or builtin:NAME")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--episode-steps", type=int, default=400)
    p.add_argument("--sample", action="store_true", help="sample tokens (default: greedy)")
    p.add_argument("--label", default=None, help="name in the table (default: the model)")
    p.add_argument("--out", default="out/sim_eval", help="output folder")
    p.add_argument("--timeout", type=float, default=None, help="seconds (default: generous)")
    p.add_argument(
        "--real-time-factor",
        type=float,
        default=0.5,
        help="sim seconds per wall second at most (below 1 leaves a slow CPU's policy its "
        "sim-time budget; 0: as fast as possible)",
    )
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID (default: a free one, discovery on this machine only)",
    )
    p.add_argument("--no-stack", action="store_true",
                   help="the policy drives the sim through the executor without ROS, the "
                        "chunks delayed by the inference time: a quick screen (about 1 s an "
                        "episode), labelled 'no stack'")
    p.add_argument("--table", nargs="+", metavar="RESULTS_JSON",
                   help="print a comparison, each row paired with the first on their shared "
                        "seeds (exact McNemar); A.json+B.json pools one policy's disjoint seed "
                        "ranges into one row")
    p.add_argument("--plot", default=None, metavar="PNG", help="with --table: bar chart too")
    args = p.parse_args(argv)
    if args.table:
        try:
            print(table(args.table))
            if args.plot:
                print(f"plot: {plot(args.table, Path(args.plot))}")
        except (OSError, ValueError) as exc:  # a missing or unreadable file, a refused pool
            p.error(f"--table: {exc}")
        except KeyError as exc:
            p.error(f"--table: not a sim-eval results.json (it has no {exc})")
        return 0
    if not args.model:
        p.error("--model is required (or --table)")
    if not args.model.startswith(BUILTIN_PREFIX):  # before any episode runs, in both modes
        from faster_ros.paths import model_path

        try:
            model_path(args.model)
        except FileNotFoundError as exc:
            p.error(str(exc))
    if args.no_stack:
        s = evaluate_no_stack(args.model, Path(args.out), args.episodes, args.seed,
                              args.episode_steps, deterministic=not args.sample,
                              label=args.label)
        print(table([str(Path(args.out) / "results.json")]))
        return 0
    s = evaluate(
        args.model,
        Path(args.out),
        args.episodes,
        args.seed,
        args.episode_steps,
        deterministic=not args.sample,
        timeout_s=args.timeout,
        label=args.label,
        domain_id=args.domain_id,
        real_time_factor=args.real_time_factor,
    )
    print(table([str(Path(args.out) / "results.json")]))
    return 0 if s["complete"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
