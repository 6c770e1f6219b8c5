"""Start a faster_ros.graph here, without ``ros2 launch``: in one process or as child processes.

The specs are the same ones the launch files turn into launch_ros Nodes, so what runs here is
what runs on a robot. Child processes get ``--ros-args -r __node:=NAME --params-file FILE``, the
standard ROS 2 command line.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import yaml

from faster_ros.graph import Graph, NodeSpec

# ros-wheels-bootstrapper re-executes the interpreter once with the library path set and marks the
# environment; a child that inherits the mark skips that step and cannot load the ROS libraries.
_BOOTSTRAP_MARK = "_ROS_WHEELS_BOOTSTRAP_COMPLETE"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child python that imports rclpy."""
    env = {k: v for k, v in os.environ.items() if k != _BOOTSTRAP_MARK}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def params_file(spec: NodeSpec, folder: Path) -> Path:
    path = folder / f"{spec.name}.params.yaml"
    path.write_text(yaml.safe_dump({spec.name: {"ros__parameters": spec.parameters}}))
    return path


def node_command(spec: NodeSpec, params: Path) -> list[str]:
    remaps = [a for src, dst in spec.remappings for a in ("-r", f"{src}:={dst}")]
    return [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}",
            "--params-file", str(params), *remaps]


class ProcessGraph:
    """The nodes of a graph as child processes; a context manager that stops them all."""

    def __init__(self, graph: Graph, log_dir: str | Path | None = None,
                 env: dict[str, str] | None = None):
        self.graph = graph
        self._tmp = tempfile.TemporaryDirectory(prefix="faster_ros_bringup_")
        self.log_dir = Path(log_dir or self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._env = child_env(env)
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, names: Iterable[str] | None = None) -> ProcessGraph:
        for spec in self.graph.nodes:
            if names is not None and spec.name not in names:
                continue
            self.start_node(spec)
        return self

    def start_node(self, spec: NodeSpec) -> subprocess.Popen:
        params = params_file(spec, Path(self._tmp.name))
        log = open(self.log_dir / f"{spec.name}.log", "ab")  # noqa: SIM115 (closed on stop)
        proc = subprocess.Popen(node_command(spec, params), stdout=log, stderr=subprocess.STDOUT,
                                env=self._env, start_new_session=True)
        proc._faster_log = log  # type: ignore[attr-defined]
        self.procs[spec.name] = proc
        return proc

    def stop_node(self, name: str, sig: int = signal.SIGINT, timeout: float = 10.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc._faster_log.close()  # type: ignore[attr-defined]

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self) -> None:
        for name in list(self.procs):
            self.stop_node(name)
        self._tmp.cleanup()

    def __enter__(self) -> ProcessGraph:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_node(spec: NodeSpec, extra: dict | None = None):
    """Instantiate a spec's node class in this process (rclpy must be initialised)."""
    from rclpy.parameter import Parameter

    cls = getattr(importlib.import_module(spec.module), spec.node_class)
    values = {**spec.parameters, **(extra or {})}
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    return cls(parameter_overrides=overrides)


def spin_in_process(graph: Graph, duration_s: float | None = None) -> None:
    """Run every node of ``graph`` in this process until Ctrl-C or ``duration_s``: each node on
    its own single-threaded executor and thread (see :mod:`faster_ros.ros.node_base` for why not
    rclpy's MultiThreadedExecutor), so that a slow callback of one node never delays another."""
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    nodes, executors, threads = [], [], []
    try:
        for spec in graph.nodes:
            nodes.append(make_node(spec))
            executors.append(SingleThreadedExecutor())
            executors[-1].add_node(nodes[-1])
        for executor in executors:
            threads.append(threading.Thread(target=_spin_quietly, args=(executor,),
                                            daemon=True))
            threads[-1].start()
        end = None if duration_s is None else time.monotonic() + duration_s
        while rclpy.ok() and all(t.is_alive() for t in threads) and (
                end is None or time.monotonic() < end):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for executor in executors:
            executor.shutdown()
        for thread in threads:
            thread.join(timeout=5.0)
        for node in nodes:
            if callable(getattr(node, "shutdown", None)):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()


def _spin_quietly(executor) -> None:
    from rclpy.executors import ExternalShutdownException

    try:
        executor.spin()
    except ExternalShutdownException:
        pass
