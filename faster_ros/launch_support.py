"""Turn faster_ros.graph into a ROS 2 launch description (for robots with ROS 2 installed).

``launch`` and ``launch_ros`` are imported only inside these functions: they exist on a ROS 2
install, not on PyPI (PyPI's ``launch`` is an unrelated project and must never be installed).
"""

from __future__ import annotations

from faster_ros.graph import build_graph

LAUNCH_ARGUMENTS = {
    "mock_robot": ("false", "start the mock robot node instead of talking to hardware"),
    "sim": ("false", "start the simulated robot (MuJoCo; it publishes /clock) instead"),
    "mock_source": ("", "rosbag2 the mock robot replays (empty: generated signals)"),
    "model": ("", "policy model directory or shipped name (default: the embodiment's)"),
    "tokenizer": ("", "tokenizer directory or shipped name (default: the embodiment's)"),
    "use_sim_time": ("false", "use /clock (rosbag replay, simulation)"),
    "initial_mode": ("", "TELEOP, POLICY or HOLD at start (default: the config's handoff)"),
}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def graph_node_actions(embodiment: str, values: dict[str, str]) -> list:
    """launch_ros Node actions for the embodiment's graph, given resolved argument values."""
    from launch_ros.actions import Node

    graph = build_graph(
        embodiment,
        mock_robot=_truthy(values.get("mock_robot", "false")),
        sim=_truthy(values.get("sim", "false")),
        model=values.get("model") or None,
        tokenizer=values.get("tokenizer") or None,
        use_sim_time=_truthy(values.get("use_sim_time", "false")),
        mock_source=values.get("mock_source", ""),
        initial_mode=values.get("initial_mode", ""),
    )
    return [
        Node(
            package="faster_ros",
            executable=spec.executable,
            name=spec.name,
            parameters=[spec.parameters],
            remappings=list(spec.remappings),
            output="screen",
            emulate_tty=True,
        )
        for spec in graph.nodes
    ]


def embodiment_launch_description(embodiment: str):
    """The LaunchDescription that ``launch/<embodiment>.launch.py`` returns."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    from launch import LaunchDescription

    def _nodes(context, *args, **kwargs):
        values = {k: LaunchConfiguration(k).perform(context) for k in LAUNCH_ARGUMENTS}
        return graph_node_actions(embodiment, values)

    declared = [
        DeclareLaunchArgument(name, default_value=default, description=doc)
        for name, (default, doc) in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
