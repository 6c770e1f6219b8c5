"""Cost of the runtime core per call: observation assembly, chunk submit, command, trajectory.

Prints figures (no timed assertions). Usage: python bench/bench_control.py [embodiment]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from faster_ros.control import Chunk, ChunkExecutor
from faster_ros.embodiment import load_embodiment
from faster_ros.observation import ObservationAssembler


def _per_call_us(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n * 1e6


def bench_observation(emb) -> dict[str, float]:
    asm = ObservationAssembler(emb)
    frames = {cam.name: np.zeros((224, 224, 3), np.uint8) for cam in emb.cameras}

    def feed(i: int) -> None:
        t = i / 30
        for name, frame in frames.items():
            asm.add_image(name, t, frame)
        for ji in emb.joint_inputs:
            for k in range(3):  # joint states at 90 Hz
                asm.add_joints(ji.topic, t + k / 90, ji.joints, np.zeros(len(ji.joints)))

    feed_us = _per_call_us(feed, 300)
    now = 299 / 30 + 0.01
    result = asm.assemble(now)
    assert result.ok, result.reason
    return {"feed one 30 Hz frame set (+3 joint msgs per input)": feed_us,
            "assemble": _per_call_us(lambda i: asm.assemble(now), 300)}


def bench_executor(emb) -> dict[str, float]:
    ex = ChunkExecutor(emb)
    mid = (emb.lower + emb.upper) / 2
    ex.set_measured(mid, 0.0)
    h, dt = emb.tokenizer.chunk_size, emb.control.dt
    rng = np.random.default_rng(0)
    chunks = [Chunk(mid + np.cumsum(rng.normal(0, 0.002, (h, emb.action_dim)), axis=0), 0.0, dt)
              for _ in range(8)]
    clock = [0.0]

    def submit(i: int) -> None:
        clock[0] += dt
        c = chunks[i % len(chunks)]
        ex.submit(Chunk(c.positions, clock[0] - 0.1, dt), clock[0])

    return {
        f"submit ({h} x {emb.action_dim}: anchor + blend + gate)": _per_call_us(submit, 300),
        "command": _per_call_us(lambda i: ex.command(clock[0]), 2000),
        "trajectory": _per_call_us(lambda i: ex.trajectory(clock[0]), 2000),
    }


def main(argv: list[str]) -> None:
    name = argv[0] if argv else "r1lite_wbc"
    emb = load_embodiment(name)
    print(f"embodiment {name}: {emb.action_dim} dims, {len(emb.cameras)} cameras, "
          f"{len(emb.joint_inputs)} joint inputs")
    for label, us in {**bench_observation(emb), **bench_executor(emb)}.items():
        print(f"  {label:<58s} {us:8.1f} us/call")


if __name__ == "__main__":
    main(sys.argv[1:])
