"""Run training subprocesses with a hard time limit that leaves evidence when it is hit.

Every process gets PYTHONFAULTHANDLER=1 and its own session; on a timeout the whole session gets
SIGABRT, so each Python process in it (launcher and ranks) prints its threads' stacks into the
log before it dies, and the test fails with that log instead of a bare TimeoutExpired.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import pytest


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    # gloo on loopback: the hostname may resolve to an interface the sandbox cannot use
    return dict(os.environ, PYTHONFAULTHANDLER="1", GLOO_SOCKET_IFNAME="lo",
                OMP_NUM_THREADS="1", **(extra or {}))


def _abort(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGABRT)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in logs)


def run_logged(cmds: list[list[str]], logs: list[Path], timeout: float,
               envs: list[dict[str, str]] | None = None) -> list[int]:
    """Start every command at once (stdout and stderr into its log), wait for all; their exit
    codes. Past ``timeout`` seconds: stacks into the logs, then pytest.fail with their tails."""
    envs = envs or [{}] * len(cmds)
    procs = []
    for cmd, log, extra in zip(cmds, logs, envs, strict=True):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                          env=_env(extra), start_new_session=True))
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _abort(procs)
        pytest.fail(f"not finished in {timeout:.0f} s; stacks at the end of each log:\n"
                    + _tails(logs))
    for log in logs:  # the teardown watchdog did its job; keep its evidence in the report
        if "destroy_process_group did not return" in log.read_text():
            warnings.warn(f"teardown watchdog fired:\n{_tails([log])}", stacklevel=2)
    return [proc.returncode for proc in procs]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(cmd: list[str], world: int, log_dir: Path, timeout: float) -> list[Path]:
    """Launch ``world`` ranks of ``cmd`` without a launcher, the way srun does (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT for env:// rendezvous); asserts that every rank exits 0 and
    returns the logs, rank 0 first."""
    port = str(free_port())
    logs = [log_dir / f"rank{r}.log" for r in range(world)]
    envs = [{"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
             "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
            for r in range(world)]
    codes = run_logged([cmd] * world, logs, timeout, envs)
    assert codes == [0] * world, f"exit codes {codes}\n" + _tails(logs)
    return logs
