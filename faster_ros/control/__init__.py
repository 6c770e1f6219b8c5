"""Chunk execution core: timing (anchor), seam blending, the safety gate and the executor state
machine. Plain numpy; no rclpy (the executor node in ``faster_ros.ros`` wraps it)."""

from faster_ros.control.blending import blend_seam, blend_weights, smoothstep
from faster_ros.control.chunk import Chunk, GateResult
from faster_ros.control.executor import ChunkExecutor, Command, ExecutorStatus, Trajectory
from faster_ros.control.safety import SafetyGate
from faster_ros.control.timing import anchor, delay_steps, late_steps, time_scale

__all__ = [
    "Chunk", "ChunkExecutor", "Command", "ExecutorStatus", "GateResult", "SafetyGate",
    "Trajectory", "anchor", "blend_seam", "blend_weights", "delay_steps", "late_steps",
    "smoothstep", "time_scale",
]
