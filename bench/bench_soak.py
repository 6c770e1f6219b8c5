"""Soak benchmark: the whole stack for a long run, watching for leaks, lost chunks and latency.

Runs the graph as separate processes (mock robot -> policy node -> executor), by default the
R1 Lite whole-body config (3 compressed cameras at 30 Hz, 5 joint-state topics at 100 Hz) with
the scripted ``builtin:wave`` policy, for ``--minutes`` (default 10), and prints:

* memory: the resident set size (RSS, from /proc) of every node process, sampled every
  ``--sample-s``; growth = last sample - the first sample after the warm-up (``--warmup-s``), and
  the least-squares slope in MB/min over the same span. Target: growth < 50 MB;
* chunks: published by the policy (ActionChunk on the live and shadow topics), the executor's
  verdict for each (ChunkExecution: ok / clipped / time_scaled / rejected / dropped, with
  reasons), late ones (rejected as entirely late, or executed with steps dropped beyond the
  latency the policy's replanning period implies), and every chunk the policy published that got
  no verdict with a reason ("lost without a logged reason"). Target: none;
* latency per executed chunk: observation received -> commands published (overhead + model),
  the stack's own overhead, and observation stamp -> executor verdict (what anchoring drops), at
  p50 / p99;
* the camera and joint rates the policy node received (its diagnostics) and the machine's load.

Nothing is asserted; the figures go to stdout (and ``--json``). Run it under ``nice -n 10`` on a
shared machine:

    nice -n 10 .venv/bin/python bench/bench_soak.py [--minutes 10] [--embodiment r1lite_wbc]
        [--image 240 320] [--model builtin:wave] [--json soak.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter

import numpy as np

ACCEPTED = ("ok", "clipped", "time_scaled")


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def memory_figures(samples: list[tuple[float, dict[str, float | None]]], warmup_s: float) -> dict:
    """Per process: RSS at the end of the warm-up and at the end, growth and slope (MB/min)."""
    if not samples:
        return {}
    t0 = samples[0][0]
    out = {}
    for name in samples[0][1]:
        pts = [(t - t0, s[name]) for t, s in samples if s.get(name) is not None]
        steady = [(t, v) for t, v in pts if t >= warmup_s] or pts[-1:]
        if not steady:
            out[name] = None
            continue
        ts, vs = np.array(steady).T
        slope = float(np.polyfit(ts / 60.0, vs, 1)[0]) if len(ts) > 2 else 0.0
        out[name] = {"rss_start_mb": round(pts[0][1], 1), "rss_after_warmup_mb": round(vs[0], 1),
                     "rss_end_mb": round(vs[-1], 1), "rss_max_mb": round(float(vs.max()), 1),
                     "growth_mb": round(float(vs[-1] - vs[0]), 1),
                     "slope_mb_per_min": round(slope, 3)}
    return out


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def make_listener(emb):
    """A lean listener (counts and a few floats per chunk; no per-message history of sensors or
    commands, so that the benchmark itself does not grow)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node

    from faster_msgs.msg import ActionChunk, ChunkExecution, PolicyStatus
    from faster_ros import graph
    from faster_ros.ros import conversions as conv
    from faster_ros.ros.qos import CHUNK_QOS, COMMAND_QOS, STATUS_QOS

    class SoakListener(Node):
        def __init__(self):
            super().__init__("bench_soak")
            self.lock = threading.Lock()
            self.published: dict[int, float] = {}  # sequence -> receive time (live topic)
            self.shadow: set[int] = set()  # sequences published on the shadow topic
            self.verdicts: dict[int, ChunkExecution] = {}
            self.executions = 0
            self.latency_ms: list[float] = []
            self.overhead_ms: list[float] = []
            self.model_ms: list[float] = []
            self.age_ms: list[float] = []  # observation stamp -> verdict
            self.steps_dropped: list[int] = []
            self.commands = Counter()
            self.bad_commands = Counter()
            self.rates: dict[str, list[float]] = {}
            self.policy_status: PolicyStatus | None = None
            self.executor_status: PolicyStatus | None = None
            self.create_subscription(ActionChunk, graph.CHUNK_TOPIC, self._on_chunk, CHUNK_QOS)
            self.create_subscription(ActionChunk, graph.SHADOW_CHUNK_TOPIC, self._on_shadow,
                                     CHUNK_QOS)
            self.create_subscription(ChunkExecution, graph.EXECUTION_TOPIC, self._on_execution,
                                     CHUNK_QOS)
            self.create_subscription(PolicyStatus, graph.STATUS_TOPIC, self._on_policy,
                                     STATUS_QOS)
            self.create_subscription(PolicyStatus, graph.EXECUTOR_STATUS_TOPIC, self._on_exec,
                                     STATUS_QOS)
            self.create_subscription(DiagnosticArray, graph.DIAGNOSTICS_TOPIC, self._on_diag, 10)
            for group in emb.outputs:
                self.create_subscription(conv.MESSAGE_TYPES[group.kind], group.topic,
                                         self._on_command(group), COMMAND_QOS)

        def _on_chunk(self, msg) -> None:
            with self.lock:
                self.published[msg.sequence] = time.time()

        def _on_shadow(self, msg) -> None:
            with self.lock:
                self.shadow.add(msg.sequence)

        def _on_execution(self, msg) -> None:
            now = conv.to_sec(msg.header.stamp)
            with self.lock:
                self.executions += 1
                self.verdicts[msg.sequence] = msg
                if msg.verdict in ACCEPTED:
                    self.steps_dropped.append(int(msg.steps_dropped))
                    self.age_ms.append((now - conv.to_sec(msg.observation_stamp)) * 1e3)
                    self.model_ms.append(float(msg.model_ms))
                    if msg.overhead_ms >= 0:
                        self.overhead_ms.append(float(msg.overhead_ms))
                        self.latency_ms.append(float(msg.overhead_ms + msg.model_ms))

        def _on_command(self, group):
            lo, hi = emb.lower[list(group.indices)], emb.upper[list(group.indices)]

            def callback(msg) -> None:
                if group.kind == "joint_trajectory":
                    values = np.array([p.positions for p in msg.points], dtype=np.float64)
                else:
                    values = conv.command_values(group, msg)
                ok = values is not None and np.isfinite(values).all() and np.all(
                    values >= lo - 1e-9) and np.all(values <= hi + 1e-9)
                with self.lock:
                    self.commands[group.name] += 1
                    if not ok:
                        self.bad_commands[group.name] += 1

            return callback

        def _on_policy(self, msg) -> None:
            self.policy_status = msg

        def _on_exec(self, msg) -> None:
            self.executor_status = msg

        def _on_diag(self, msg) -> None:
            for st in msg.status:
                values = {kv.key: kv.value for kv in st.values}
                if "rate_hz" in values:
                    with self.lock:
                        self.rates.setdefault(st.hardware_id, []).append(float(values["rate_hz"]))

    return SoakListener()


def chunk_accounting(listener, emb, replan_s: float) -> dict:
    """Verdict counts, late chunks and chunks published without any verdict."""
    with listener.lock:
        published = dict(listener.published)
        verdicts = dict(listener.verdicts)
        shadow = set(listener.shadow)
    counts = Counter(m.verdict for m in verdicts.values())
    no_reason = [s for s, m in verdicts.items() if m.verdict not in ACCEPTED and not m.reasons]
    first = min(verdicts) if verdicts else 0
    last_t = max(published.values()) if published else 0.0
    # a chunk published in the last 2 s may still be in flight at the end
    lost = sorted(s for s, t in published.items() if s not in verdicts and s >= first
                  and t < last_t - 2.0)
    late_rejected = sum(1 for m in verdicts.values() if m.verdict == "rejected"
                        and any("late" in r for r in m.reasons))
    dt = emb.control.dt
    expected_drop = int(np.ceil(replan_s / dt)) + 1
    late_executed = sum(1 for m in verdicts.values() if m.verdict in ACCEPTED
                        and m.steps_dropped > 2 * expected_drop)
    reasons = Counter(r.split(":")[0][:60] for m in verdicts.values()
                      if m.verdict not in ACCEPTED for r in m.reasons[:1])
    return {
        "published_live": len(published),
        "published_shadow": len(shadow),
        "verdicts": dict(counts),
        "rejected_or_dropped_reasons": dict(reasons.most_common(8)),
        "late_rejected": late_rejected,
        "late_executed": late_executed,
        "late_executed_threshold_steps": 2 * expected_drop,
        # sequences neither on the live nor on the shadow topic: not seen by this listener
        "sequences_not_seen_by_listener": len(set(range(min(published), max(published) + 1))
                                              - set(published) - shadow) if published else 0,
        "lost_without_verdict": lost[:20],
        "lost_without_verdict_count": len(lost),
        "refused_without_reason_count": len(no_reason),
        "any_lost_without_logged_reason": bool(lost or no_reason),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embodiment", default="r1lite_wbc")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--image", type=int, nargs=2, default=[240, 320], metavar=("H", "W"),
                        help="size of the mock robot's camera frames")
    parser.add_argument("--joint-rate", type=float, default=100.0,
                        help="joint state rate of the mock robot (Hz)")
    parser.add_argument("--model", default="builtin:wave")
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--log-dir", default=None,
                        help="keep the nodes' logs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from faster_ros.embodiment import load_embodiment
    from faster_ros.graph import build_graph
    from faster_ros.ros.bringup import ProcessGraph

    emb = load_embodiment(args.embodiment)
    graph = build_graph(emb, mock_robot=True, model=args.model, overrides={
        "mock_robot": {"image_size": list(args.image), "joint_rate_hz": args.joint_rate}})
    rclpy.init()
    listener = make_listener(emb)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    seconds = args.minutes * 60.0
    samples: list[tuple[float, dict[str, float | None]]] = []
    loads: list[float] = []
    with ProcessGraph(graph, log_dir=args.log_dir) as pg:
        pids = {name: p.pid for name, p in pg.procs.items()}
        pids["bench (listener)"] = os.getpid()
        start = time.monotonic()
        next_sample = start
        with tqdm(total=int(seconds), unit="s", desc=f"soak {emb.name}") as bar:
            while (elapsed := time.monotonic() - start) < seconds:
                executor.spin_once(timeout_sec=0.05)
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic(), {n: rss_mb(p) for n, p in pids.items()}))
                    loads.append(os.getloadavg()[0])
                    next_sample += args.sample_s
                    with listener.lock:
                        done = len(listener.verdicts)
                    rss = {n.split("_")[-1][:6]: round(v or 0) for n, v in samples[-1][1].items()}
                    bar.set_postfix(chunks=done, rss_mb=rss, refresh=False)
                if int(elapsed) // 10 != bar.n // 10:  # a line every 10 s when logged
                    bar.n = int(elapsed)
                    bar.refresh()
        samples.append((time.monotonic(), {n: rss_mb(p) for n, p in pids.items()}))
        end_spin = time.monotonic() + 2.0  # the last verdicts
        while time.monotonic() < end_spin:
            executor.spin_once(timeout_sec=0.05)
        alive = pg.alive()
        logs = {name: pg.log(name) for name in pg.procs}
    executor.shutdown()
    listener.destroy_node()
    rclpy.shutdown()

    replan_s = emb.control.execute_steps * emb.control.dt
    skip = lambda xs: xs[len(xs) // 10:]  # noqa: E731 (the first 10 %: discovery, warm-up)
    rates = {name: float(np.median(skip(v))) for name, v in listener.rates.items() if v}
    figures = {
        "embodiment": emb.name,
        "model": args.model,
        "minutes": args.minutes,
        "image_hw": list(args.image),
        "nodes_alive_at_end": alive,
        "load_avg_1min": {"mean": round(float(np.mean(loads)), 2) if loads else None,
                          "max": round(float(np.max(loads)), 2) if loads else None,
                          "cpus": os.cpu_count()},
        "memory": memory_figures(samples, args.warmup_s),
        "chunks": chunk_accounting(listener, emb, replan_s),
        "latency_ms": {
            "obs_received_to_commands_p50": pct(listener.latency_ms, 50),
            "obs_received_to_commands_p99": pct(listener.latency_ms, 99),
            "overhead_p50": pct(listener.overhead_ms, 50),
            "overhead_p99": pct(listener.overhead_ms, 99),
            "model_p50": pct(listener.model_ms, 50),
            "model_p99": pct(listener.model_ms, 99),
            "obs_stamp_to_verdict_p50": pct(listener.age_ms, 50),
            "obs_stamp_to_verdict_p99": pct(listener.age_ms, 99),
        },
        "steps_dropped_p50_p99": [pct(listener.steps_dropped, 50),
                                  pct(listener.steps_dropped, 99)],
        "commands": dict(listener.commands),
        "commands_non_finite_or_out_of_limits": dict(listener.bad_commands),
        "input_rates_hz_received_by_policy": rates,
        "configured_rates_hz": {**{c.name: c.rate_hz for c in emb.cameras},
                                **{j.topic: args.joint_rate for j in emb.joint_inputs}},
        "policy_status_at_end": listener.policy_status.reason if listener.policy_status else None,
        "executor_status_at_end": (listener.executor_status.reason if listener.executor_status
                                   else None),
        "log_lines": {name: {"warnings": log.count("[WARN]"), "errors": log.count("[ERROR]")}
                      for name, log in logs.items()},
    }
    growth = [m["growth_mb"] for m in figures["memory"].values() if m]
    figures["targets"] = {
        "memory_growth_under_50mb": bool(growth) and max(growth) < 50.0,
        "no_chunk_lost_without_logged_reason":
            not figures["chunks"]["any_lost_without_logged_reason"],
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
