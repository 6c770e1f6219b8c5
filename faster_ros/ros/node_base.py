"""What every faster_ros node shares: declared parameters with descriptions, the clock in
seconds, and a ``main`` that spins and shuts down cleanly.

Executors: a node started as its own process (console scripts, launch files, ProcessGraph) spins
on rclpy's ``EventsExecutor`` (``FASTER_ROS_EXECUTOR=single`` selects ``SingleThreadedExecutor``).
Measured with bench/bench_runtime.py (r1lite_wbc, 3 JPEG cameras at 30 Hz, 60 s): the stack's
overhead per chunk was p50 6.3 ms / p95 9.7 ms on SingleThreadedExecutor and p50 3.0 ms / p95
4.3-4.5 ms on EventsExecutor, whose wait and dispatch are C++ (in a py-spy profile of the policy
node, rclpy's Python executor machinery was the largest cost). Never rclpy's
``MultiThreadedExecutor`` (9.1.2, Kilted): it spins hot while a callback of a mutually exclusive
group runs and another entity of that group is ready (the default group of every node is one),
and the spinning thread holds the GIL. On this 2-core machine a mock robot in one published 195
of the 4,000 joint states due in 40 s and the whole-body stack produced no chunk in 40 s. Python
callbacks gain no parallelism from threads anyway (the GIL); the policy's inference runs on its
own worker thread, outside the executor."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.node import Node


def declare(node: Node, name: str, default: Any, description: str,
            read_only: bool = False) -> Any:
    """Declare a parameter with its description and return its value (``use_sim_time`` is
    declared by rclpy itself)."""
    if node.has_parameter(name):
        return node.get_parameter(name).value
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    return node.declare_parameter(name, default, descriptor).value


def now_s(node: Node) -> float:
    """The node's clock (sim time when use_sim_time is set) in seconds."""
    return node.get_clock().now().nanoseconds * 1e-9


def spin_node(node: Node) -> None:
    """Spin ``node`` until its context shuts down (Ctrl-C), on the executor that
    ``FASTER_ROS_EXECUTOR`` names: ``events`` (default) or ``single``."""
    executor = make_executor(node.context)
    executor.add_node(node)
    try:
        # spin_once in a loop: EventsExecutor.spin() of rclpy 9.1.2 ran no callback at all here
        while node.context.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()


def make_executor(context):
    kind = os.environ.get("FASTER_ROS_EXECUTOR", "events")
    if kind == "events":
        return EventsExecutor(context=context)
    if kind == "single":
        return SingleThreadedExecutor(context=context)
    raise ValueError(f"FASTER_ROS_EXECUTOR={kind!r}: expected 'events' or 'single'")


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Console-script body: init, build the node, spin it (:func:`spin_node`), shut down."""
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin_node(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            shutdown = getattr(node, "shutdown", None)
            if callable(shutdown):
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
