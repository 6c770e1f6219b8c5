"""A policy's training lineage: the runs that trained its weights, through ``--init-from``.

A continued run's provenance (policy.json) names the run it started from; that run's provenance
names the one before it, and so on. :func:`training_runs` follows the chain, so that a table can
say "20,000 steps in 5 runs, 85 min" rather than the last run's 4,000. Training records the chain
it continued (``provenance.init_from.chain``) so the lineage survives when the earlier run
directories are gone (a shipped model without its runs/).
"""

from __future__ import annotations

import json
from pathlib import Path

POLICY_FILE = "policy.json"  # a saved policy's metadata (faster_ros.policy.modeling uses it)
MAX_RUNS = 256  # a cycle in hand-edited provenances must not hang a table


def _run(path: str, prov: dict) -> dict:
    return dict(path=path, steps=prov.get("steps"), wall_time_s=prov.get("wall_time_s"))


def training_runs(directory: str | Path) -> list[dict]:
    """``[{path, steps, wall_time_s}, ...]``: the run that wrote ``directory``, then the run it
    continued, and so on back to the first (``[]`` without a provenance). A recorded ``chain``
    is used as is; otherwise the ``init_from`` paths are followed while their policy.json
    exists, and a missing one ends the list with what was recorded of it."""
    directory = Path(directory)
    try:
        prov = json.loads((directory / POLICY_FILE).read_text()).get("provenance", {})
    except FileNotFoundError:
        return []
    runs = [_run(str(directory), prov)]
    while (source := prov.get("init_from")) and len(runs) < MAX_RUNS:
        if "chain" in source:
            return runs + list(source["chain"])
        runs.append(_run(source.get("path", "?"), source))
        try:
            prov = json.loads((Path(source.get("path", "")) / POLICY_FILE).read_text()).get(
                "provenance", {})
        except (FileNotFoundError, IsADirectoryError, OSError):
            break
    return runs


def totals(runs: list[dict]) -> dict:
    """``{runs, steps, wall_time_s}`` summed over :func:`training_runs` (None where a run did not
    record it)."""
    steps = [r.get("steps") for r in runs]
    walls = [r.get("wall_time_s") for r in runs]
    return dict(runs=len(runs),
                steps=sum(steps) if runs and None not in steps else None,
                wall_time_s=round(sum(walls), 1) if runs and None not in walls else None)
