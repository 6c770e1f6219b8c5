"""What every faster_ros node shares: declared parameters with descriptions, the clock in
seconds, and a ``main`` that spins and shuts down cleanly.

Executors: every node spins on its own ``SingleThreadedExecutor``. rclpy's
``MultiThreadedExecutor`` (9.1.2, Kilted) spins hot while a callback of a mutually exclusive group
runs and another entity of that group is ready (the default group of every node is one): the
spinning thread holds the GIL and starves the callbacks. Measured on this 2-core machine: a mock
robot in such an executor published 195 of the 4,000 joint states due in 40 s and the whole-body
stack produced no chunk in 40 s; with one single-threaded executor per node, 3,000 of 3,000 in
30 s. Python callbacks gain no parallelism from threads anyway (the GIL); the policy's inference
runs on its own worker thread, outside the executor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
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
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Console-script body: init, build the node, spin on a SingleThreadedExecutor, shut down."""
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
