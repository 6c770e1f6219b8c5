"""``faster-ros demo``: the whole stack on the shipped default, for a bounded time.

The mock robot replays the shared G1 bag's camera and joints, the policy node runs the shipped
FASTerVLA + FASTerVQ, the executor drives the mock robot; this process listens, shows a live status
line, and ends with a report (JSON + PNG of commanded vs recorded joints and the latency
histogram).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from faster_ros.embodiment import load_embodiment
from faster_ros.graph import build_graph
from faster_ros.paths import model_path
from faster_ros.report import chunk_latencies, plot_demo, summarise_commands

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BAG = REPO_ROOT.parent / "shared" / "data" / "bags" / "g1_inspire_ep1_mcap"


def run_demo(embodiment: str = "g1_inspire", bag: str | None = None, duration_s: float = 30.0,
             out_dir: str = "out/demo", model: str | None = None) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rich.console import Console
    from rich.live import Live

    from faster_ros.ros.bringup import ProcessGraph
    from faster_ros.ros.monitor import MonitorNode

    console = Console()
    emb = load_embodiment(embodiment)
    model = model or emb.policy.model
    try:
        model_path(model)
    except FileNotFoundError as exc:
        if model != emb.policy.model:
            raise  # a model the user asked for must exist
        console.print(f"[bold yellow]the shipped policy is not available ({exc}); running the "
                      "stack with the scripted builtin:wave policy instead (not a learned policy)")
        model = "builtin:wave"
    source = bag if bag is not None else (str(DEFAULT_BAG) if DEFAULT_BAG.exists() else "")
    if not source:
        console.print(f"[yellow]no bag at {DEFAULT_BAG}: the mock robot generates frames")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the mock robot replays the bag's frames and, until the executor first commands, its joints;
    # then it follows the commands (the policy sees the robot it drives, as on hardware)
    g = build_graph(emb, mock_robot=True, model=model, mock_source=source,
                    overrides={"mock_robot": {"joint_source": "commands"}} if source else None)
    console.print(f"[bold]faster_ros demo[/]: {emb.name}, model {model}, source "
                  f"{source or 'generated'}, {duration_s:.0f} s; logs in {out / 'logs'}")
    rclpy.init()
    monitor = MonitorNode(emb)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    t_start = time.monotonic()
    try:
        with ProcessGraph(g, log_dir=out / "logs"), Live(console=console,
                                                           refresh_per_second=4) as live:
            while time.monotonic() - t_start < duration_s:
                executor.spin_once(timeout_sec=0.1)
                live.update(status_line(monitor, time.monotonic() - t_start, duration_s))
    finally:
        executor.shutdown()
        rec = monitor.rec
        monitor.destroy_node()
        rclpy.try_shutdown()
    console.print()
    report = demo_report(emb, rec, model, source, duration_s)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_demo(emb, rec, out / "report.png")
    console.print(f"chunks {report['chunks']}, inference p50 {report['inference_ms']['p50']:.0f}"
                  f" ms, p95 {report['inference_ms']['p95']:.0f} ms; report: "
                  f"{out / 'report.json'}, {out / 'report.png'}")
    return report


def status_line(monitor, elapsed: float, total: float) -> str:
    ps, es = monitor.rec.policy_status, monitor.rec.executor_status
    policy = f"policy {ps.mode} ({ps.reason}) last {ps.last_inference_ms:.0f} ms" if ps else \
        "policy: starting"
    execu = (f"executor {es.mode} accepted {es.chunks_produced} rejected {es.chunks_rejected} "
             f"interventions {es.safety_interventions}") if es else "executor: starting"
    return f"[{elapsed:5.1f}/{total:.0f} s] {policy} | {execu} | chunks {len(monitor.rec.chunks)}"


def demo_report(emb, rec, model: str, source: str, duration_s: float) -> dict:
    lat = chunk_latencies(rec)
    es = rec.executor_status
    return {
        "embodiment": emb.name,
        "model": model,
        "source": source or "generated",
        "duration_s": duration_s,
        "chunks": len(rec.chunks),
        "inference_ms": {"p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                         "p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
                         "mean": float(np.mean(lat)) if len(lat) else float("nan")},
        "executor": None if es is None else {
            "accepted": int(es.chunks_produced), "rejected": int(es.chunks_rejected),
            "safety_interventions": int(es.safety_interventions), "mode": es.mode,
            "reason": es.reason},
        "commands": summarise_commands(emb, rec),
    }
