"""Cost of the teleop <-> policy handoff per control tick (faster_ros.control.handoff).

Prints figures (no timed assertions): HandoffController.command() and .teleop_input() per call,
in TELEOP (operator streaming) and in POLICY (a chunk every execute_steps ticks).
Usage: python bench/bench_handoff.py [embodiment] [ticks]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from faster_ros.control import Chunk
from faster_ros.control.handoff import HandoffController
from faster_ros.embodiment import load_embodiment


def bench(emb, initial: str, ticks: int) -> str:
    arm = emb.handoff.teleop_inputs[0]
    dt = emb.control.dt
    h = HandoffController(emb, 0.0, initial=initial)
    x = np.where(emb.is_velocity, 0.0, 0.5 * (emb.lower + emb.upper))
    h.set_measured(x, 0.0)
    t, command_us, teleop_us = 0.0, [], []
    for k in range(ticks):
        t += dt
        operator = {i: x[i] + 0.01 * np.sin(t) for i in arm.indices}  # below the threshold
        t0 = time.perf_counter()
        h.teleop_input(operator, t)
        teleop_us.append((time.perf_counter() - t0) * 1e6)
        if initial == "POLICY" and k % emb.control.execute_steps == 0:
            h.submit(Chunk(np.repeat(x[None], emb.tokenizer.chunk_size, 0), t, dt, k + 1), t)
        t0 = time.perf_counter()
        h.command(t)
        command_us.append((time.perf_counter() - t0) * 1e6)
    c, o = np.array(command_us), np.array(teleop_us)
    return (f"{emb.name} {initial:6s} (ends in {h.mode.value}): command() p50 "
            f"{np.percentile(c, 50):.1f} us p95 {np.percentile(c, 95):.1f} us; teleop_input() "
            f"p50 {np.percentile(o, 50):.1f} us p95 {np.percentile(o, 95):.1f} us")


def main() -> None:
    emb = load_embodiment(sys.argv[1] if len(sys.argv) > 1 else "r1lite_wbc")
    ticks = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    for initial in ("TELEOP", "POLICY"):
        print(bench(emb, initial, ticks))


if __name__ == "__main__":
    main()
