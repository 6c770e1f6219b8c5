"""QoS profiles, chosen once and named (sensors, commands, chunks, latched status)."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Sensors: best effort matches both best-effort and reliable publishers (cameras, joint states);
# a shallow queue keeps only the newest samples.
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT
)
# What the stack itself publishes as sensor data (mock robot): reliable, so that both reliable
# and best-effort subscribers match and nothing is dropped between local processes.
SENSOR_PUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE
)
# Controller commands: reliable, only the newest matters.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
# Action chunks between policy and executor: reliable, never dropped silently.
CHUNK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
# Mode changes: latched and deep enough that a recorder joining late, or a burst of switches
# (rapid toggling), loses none of the recent transitions.
MODE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Status / mode: latched so a late joiner (an operator's console, a recorder) sees the last one.
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
