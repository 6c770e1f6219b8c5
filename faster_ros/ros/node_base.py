"""What every faster_ros node shares: declared parameters with descriptions, the clock in
seconds, and a ``main`` that spins and shuts down cleanly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
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


def spin_node(node: Node, threads: int = 4) -> None:
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()


def run(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Console-script body: init, build the node, spin on a MultiThreadedExecutor, shut down."""
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
