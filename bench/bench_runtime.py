"""Runtime benchmark: the stack's own overhead per chunk and the camera rate it sustains.

Runs the whole graph as separate processes (mock robot -> policy node -> executor), with the
R1 Lite whole-body config by default (3 compressed cameras at 30 Hz: the paper's whole-body
setting) and the scripted ``builtin:wave`` policy, whose inference costs ~0.1 ms, so that what is
measured is the stack, not the model. Overhead per chunk (ChunkExecution.overhead_ms) = wall time
from the policy node receiving the observation's newest input to the executor publishing that
chunk's commands, minus inference time. Prints figures; asserts nothing about speed.

    .venv/bin/python bench/bench_runtime.py [--embodiment r1lite_wbc] [--seconds 180]
        [--image 360 640] [--model builtin:wave] [--trace out/trace]

``--trace DIR``: the nodes also write each chunk's stage times (faster_ros.ros.stage_trace) and
the figures gain ``stages_ms``, p50 / p95 / max per stage, to see where the overhead goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embodiment", default="r1lite_wbc")
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="run length (180 s: ~320 chunks, so the p95 rests on ~16 samples)")
    parser.add_argument("--image", type=int, nargs=2, default=[360, 640],
                        metavar=("H", "W"), help="size of the mock robot's camera frames")
    parser.add_argument("--model", default="builtin:wave")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--trace", default=None, metavar="DIR",
                        help="also write per-chunk stage times here (FASTER_ROS_TRACE_DIR) and "
                             "print where the overhead goes")
    args = parser.parse_args(argv)

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    if args.trace:
        import shutil

        from faster_ros.ros.stage_trace import ENV

        shutil.rmtree(args.trace, ignore_errors=True)
        os.environ[ENV] = os.path.abspath(args.trace)  # the node processes inherit it
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from tqdm import tqdm

    from faster_ros.embodiment import load_embodiment
    from faster_ros.graph import build_graph
    from faster_ros.ros.bringup import ProcessGraph
    from faster_ros.ros.monitor import MonitorNode
    from faster_ros.stats import quantile_interval

    emb = load_embodiment(args.embodiment)
    graph = build_graph(emb, mock_robot=True, model=args.model,
                        overrides={"mock_robot": {"image_size": list(args.image)}})
    rclpy.init()
    monitor = MonitorNode(emb, name="bench_runtime", streams=False)
    rates: dict[str, list[float]] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            values = {kv.key: kv.value for kv in st.values}
            if "rate_hz" in values:
                rates.setdefault(st.hardware_id, []).append(float(values["rate_hz"]))

    monitor.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    with ProcessGraph(graph) as pg:
        start = time.monotonic()
        with tqdm(total=int(args.seconds), unit="s", desc=f"{emb.name} stack") as bar:
            while (elapsed := time.monotonic() - start) < args.seconds:
                executor.spin_once(timeout_sec=0.05)
                if int(elapsed) != bar.n:  # redraw once a second: this process shares the CPU
                    bar.n = int(elapsed)
                    bar.set_postfix(chunks=len(monitor.rec.executions), refresh=False)
                    bar.refresh()
        alive = pg.alive()
    executor.shutdown()
    monitor.destroy_node()
    rclpy.shutdown()

    execs = [m for _, m in monitor.rec.executions]
    overhead = np.array([m.overhead_ms for m in execs if m.overhead_ms >= 0])
    skip = len(rates.get(emb.cameras[0].name, [])) // 5 if emb.cameras else 0
    camera_rates = {c.name: float(np.median(rates.get(c.name, [0.0])[skip:] or [0.0]))
                    for c in emb.cameras}
    figures = {
        "embodiment": emb.name,
        "model": args.model,
        "seconds": args.seconds,
        "image_hw": list(args.image),
        "nodes_alive": alive,
        "chunks": len(execs),
        "verdicts": {v: sum(m.verdict == v for m in execs) for v in {m.verdict for m in execs}},
        "overhead_ms": {
            "n": int(overhead.size),
            "p50": float(np.percentile(overhead, 50)) if overhead.size else None,
            "p95": float(np.percentile(overhead, 95)) if overhead.size else None,
            # distribution-free 95% interval of the p95 (order statistics): a p95 of ~100
            # chunks rests on its 5 largest samples
            "p95_ci95": quantile_interval(overhead, 0.95),
            "max": float(overhead.max()) if overhead.size else None,
        },
        "camera_rate_hz_received_by_policy": camera_rates,
        "camera_rate_hz_configured": {c.name: c.rate_hz for c in emb.cameras},
    }
    if args.trace:
        from faster_ros.ros.stage_trace import read_stages

        figures["stages_ms"] = read_stages(args.trace)
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
