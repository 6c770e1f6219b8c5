"""The node graph of one embodiment: which nodes run, with which parameters and topics.

One source of truth for both ways of starting the stack:
- ``launch/<embodiment>.launch.py`` turns each :class:`NodeSpec` into a ``launch_ros`` Node (on a
  robot with ROS 2 installed);
- ``faster-ros bringup <embodiment>`` (faster_ros.ros.bringup) runs the same specs in one process
  or as child processes, here where ``launch``/``ros2`` are not installable.

No rclpy here: this module only describes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from faster_ros.embodiment import (
    DEFAULT_DEADMAN_TOPIC,
    DEFAULT_TELEOP_JOINT_TOPIC,
    DEFAULT_TELEOP_TWIST_TOPIC,
    Embodiment,
    load_embodiment,
)

# Topics owned by the stack itself (robot topics come from the embodiment config).
CHUNK_TOPIC = "/faster/action_chunk"
SHADOW_CHUNK_TOPIC = "/faster/shadow/action_chunk"
STATUS_TOPIC = "/faster/policy_status"
EXECUTOR_STATUS_TOPIC = "/faster/executor_status"
EXECUTION_TOPIC = "/faster/chunk_execution"
INSTRUCTION_TOPIC = "/faster/instruction"
MODE_TOPIC = "/faster/mode"  # faster_msgs/ModeChange, one per transition (latched)
SET_MODE_SERVICE = "/faster/set_mode"  # faster_msgs/SetMode, served by the executor
# std_msgs/String (the reason): the robot was moved outside the stack (a sim episode reset);
# the executor forgets its command and the next chunk starts from the measured position
REANCHOR_TOPIC = "/faster/reanchor"
# Operator inputs (defaults of the embodiment's ``handoff`` section, which may name others):
DEADMAN_TOPIC = DEFAULT_DEADMAN_TOPIC  # std_msgs/Bool
TELEOP_JOINT_TOPIC = DEFAULT_TELEOP_JOINT_TOPIC  # sensor_msgs/JointState (leader arm)
TELEOP_TWIST_TOPIC = DEFAULT_TELEOP_TWIST_TOPIC  # geometry_msgs/Twist (base)
DIAGNOSTICS_TOPIC = "/diagnostics"


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``executable`` is the console script installed in lib/faster_ros (what
    launch_ros runs); ``module`` holds the node class and ``main`` (what bringup runs)."""

    name: str
    executable: str
    module: str
    node_class: str
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Graph:
    embodiment: str
    nodes: tuple[NodeSpec, ...]

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in the {self.embodiment} graph")


def build_graph(
    embodiment: str | Embodiment,
    *,
    mock_robot: bool = False,
    sim: bool = False,
    model: str | None = None,
    tokenizer: str | None = None,
    use_sim_time: bool = False,
    mock_source: str = "",
    deterministic: bool = False,
    initial_mode: str = "",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> Graph:
    """Describe the nodes that run ``embodiment``.

    ``model``/``tokenizer`` default to the embodiment's ``policy`` section; ``mock_source`` is a
    rosbag2 path the mock robot replays (empty: generated signals); ``sim`` starts the simulated
    robot (faster_ros.ros.sim_robot) instead, which owns /clock, so every other node then runs
    on sim time; ``initial_mode`` (TELEOP / POLICY / HOLD, empty: the config's
    ``handoff.initial_mode``) is the executor's mode at start; ``overrides`` maps a node name to
    parameter values that replace the defaults (``-p``-style).
    """
    emb = embodiment if isinstance(embodiment, Embodiment) else load_embodiment(embodiment)
    if sim and mock_robot:
        raise ValueError("choose the mock robot or the simulated robot, not both")
    use_sim_time = use_sim_time or sim
    config = emb.source
    common = {"embodiment": config, "use_sim_time": use_sim_time}
    nodes = [
        NodeSpec(
            name="faster_policy",
            executable="policy_node",
            module="faster_ros.ros.policy_node",
            node_class="PolicyNode",
            parameters={
                **common,
                "model": model or emb.policy.model or "",
                "tokenizer": tokenizer or emb.policy.tokenizer or "",
                "instruction": emb.policy.instruction,
                "deterministic": deterministic,
                "device": "cpu",
            },
        ),
        NodeSpec(
            name="faster_executor",
            executable="chunk_executor",
            module="faster_ros.ros.executor_node",
            node_class="ChunkExecutorNode",
            parameters={**common, "initial_mode": initial_mode},
        ),
    ]
    if mock_robot:
        nodes.append(
            NodeSpec(
                name="mock_robot",
                executable="mock_robot",
                module="faster_ros.ros.mock_robot",
                node_class="MockRobotNode",
                parameters={**common, "source": mock_source},
            )
        )
    if sim:
        nodes.append(
            NodeSpec(
                name="sim_robot",
                executable="sim_robot",
                module="faster_ros.ros.sim_robot",
                node_class="SimRobotNode",
                parameters={"embodiment": config, "use_sim_time": False},  # it is the clock
            )
        )
    by_name = {n.name: n for n in nodes}
    for name, values in (overrides or {}).items():
        if name not in by_name:
            raise KeyError(f"override for unknown node {name!r} (nodes: {', '.join(by_name)})")
        spec = by_name[name]
        by_name[name] = replace(spec, parameters={**spec.parameters, **values})
    return Graph(emb.name, tuple(by_name.values()))


def robot_topics(emb: Embodiment) -> dict[str, list[str]]:
    """The robot-side topics of an embodiment, by direction (for docs, checks and recording)."""
    return {
        "cameras": [c.topic for c in emb.cameras],
        "joint_inputs": [j.topic for j in emb.joint_inputs],
        "outputs": [o.topic for o in emb.outputs],
        "pose_feedback": [ee.feedback_topic for ee in emb.end_effectors],
        **handoff_topics(emb),
    }


def handoff_topics(emb: Embodiment) -> dict[str, list[str]]:
    """Operator-side topics of an embodiment: teleop command streams (with their message type)
    and the deadman (empty list: none)."""
    spec = emb.handoff
    return {
        "teleop": [f"{t.topic} ({t.msg_type})" for t in spec.teleop_inputs],
        "deadman": [spec.deadman_topic] if spec.deadman_topic else [],
    }
