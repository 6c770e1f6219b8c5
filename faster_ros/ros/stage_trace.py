"""Per-chunk stage times of the policy and executor nodes, for finding where latency goes.

Off unless ``FASTER_ROS_TRACE_DIR`` names a directory: then each node appends one JSON line per
chunk to ``<dir>/<node>.jsonl`` with the wall time (``time.time()``) of each stage, keyed by the
chunk's sequence number. ``bench/bench_runtime.py --trace`` sets it and prints the breakdown.
Each node writes its line after the last stamp it records (the policy after its publish, the
executor after its commands are out), so the file I/O is in no measured stage of its own node.
Each node also records its garbage-collector pauses (``gc.callbacks``) to ``<node>.gc.jsonl``,
written with the chunk lines, so that the breakdown can tell how much of each chunk's window the
collector stopped a process for. No rclpy here.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np

ENV = "FASTER_ROS_TRACE_DIR"

# the stages between consecutive stamps: (name, from stamp, to stamp)
STAGES = (
    ("newest input received -> worker awake", "received", "woke"),
    ("assembly", "woke", "assembled"),
    ("model (excluded from the overhead)", "assembled", "predicted"),
    ("chunk message built", "predicted", "built"),
    ("chunk publish", "built", "published"),
    ("transport to the executor", "published", "executor_in"),
    ("executor: checks before the gate", "executor_in", "gate_in"),
    ("executor: gate (anchor, blend, check)", "gate_in", "gate_out"),
    ("executor: commands published", "gate_out", "commands_out"),
)


class StageTrace:
    """Appends one line per chunk to ``<FASTER_ROS_TRACE_DIR>/<name>.jsonl``; a no-op when the
    variable is unset."""

    def __init__(self, name: str):
        directory = os.environ.get(ENV, "")
        self.path = Path(directory) / f"{name}.jsonl" if directory else None
        self._gc_started = 0.0
        self._gc_pauses: list[tuple[float, float, int]] = []  # (start wall, end wall, generation)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            gc.callbacks.append(self._on_gc)

    def close(self) -> None:
        """Stop recording collector pauses (the nodes trace until their process ends)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.time()
        else:
            self._gc_pauses.append((self._gc_started, time.time(), int(info["generation"])))

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, sequence: int, stamps: dict[str, float]) -> None:
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"sequence": int(sequence), **stamps}) + "\n")
        pauses, self._gc_pauses = self._gc_pauses, []
        if pauses:
            with self.path.with_suffix(".gc.jsonl").open("a") as f:
                f.writelines(json.dumps({"start": a, "end": b, "generation": g}) + "\n"
                             for a, b, g in pauses)


def read_stages(directory: str | Path) -> dict[str, dict[str, float]]:
    """Join the nodes' lines of a trace directory by sequence and return, per stage, p50 / p95 /
    max in ms and the sample count. Chunks without every stamp (not executed, or the run ended
    in between) are left out."""
    rows: dict[int, dict[str, float]] = {}
    pauses: list[tuple[float, float]] = []
    for path in sorted(Path(directory).glob("*.jsonl")):  # one file per node, whatever its name
        if path.name.endswith(".gc.jsonl"):
            pauses += [(e["start"], e["end"]) for e in map(json.loads,
                                                           path.read_text().splitlines())]
            continue
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            rows.setdefault(entry.pop("sequence"), {}).update(entry)
    needed = {key for _, a, b in STAGES for key in (a, b)}
    complete = [r for r in rows.values() if needed <= r.keys()]
    out: dict[str, dict[str, float]] = {}
    for label, a, b in STAGES:
        ms = np.array([(r[b] - r[a]) * 1e3 for r in complete])
        if ms.size:
            out[label] = {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
                          "max": float(ms.max()), "n": int(ms.size)}
    if complete:  # collector pauses (either node) inside received -> commands_out
        first, last = STAGES[0][1], STAGES[-1][2]
        ms = np.array([sum(max(0.0, min(b, r[last]) - max(a, r[first])) for a, b in pauses) * 1e3
                       for r in complete])
        out["garbage-collector pauses inside the window"] = {
            "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max()), "n": int(ms.size), "chunks_hit": int((ms > 0).sum())}
    return out
