"""One source of truth for the node graph: launch files and bringup read the same specs.

``launch``/``launch_ros`` cannot be installed here, so the launch files are exercised against
minimal stand-ins that record what they are given; on a robot the real packages are used.
"""

import ast
import runpy
import sys
import types
from pathlib import Path

import pytest
import yaml

from faster_ros.graph import build_graph
from faster_ros.paths import data_dir

EMBODIMENTS = ["r1lite_wbc", "r1lite_bimanual", "single_arm", "g1_inspire", "r1lite_ee"]


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


@pytest.fixture
def fake_launch(monkeypatch):
    """Stand-ins for launch / launch_ros that evaluate OpaqueFunctions like launch does."""
    launch = types.ModuleType("launch")
    actions = types.ModuleType("launch.actions")
    subs = types.ModuleType("launch.substitutions")
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")

    class LaunchDescription(list):
        pass

    class OpaqueFunction(_Recorder):
        pass

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    launch.LaunchDescription = LaunchDescription
    actions.DeclareLaunchArgument = _Recorder
    actions.OpaqueFunction = OpaqueFunction
    subs.LaunchConfiguration = LaunchConfiguration
    ros_actions.Node = _Recorder
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return OpaqueFunction


def _evaluate(description, opaque_cls, **values):
    declared = {a.args[0] if a.args else a.kwargs["name"]: a.kwargs["default_value"]
                for a in description if isinstance(a, _Recorder) and not isinstance(a,
                                                                                     opaque_cls)}
    context = {**declared, **values}
    nodes = []
    for action in description:
        if isinstance(action, opaque_cls):
            nodes += action.kwargs["function"](context)
    return declared, nodes


@pytest.mark.parametrize("embodiment", EMBODIMENTS)
def test_launch_file_starts_the_graph_nodes(embodiment, fake_launch):
    path = data_dir("launch") / f"{embodiment}.launch.py"
    description = runpy.run_path(str(path))["generate_launch_description"]()
    declared, nodes = _evaluate(description, fake_launch, mock_robot="true")
    assert {"mock_robot", "model", "use_sim_time"} <= set(declared)
    graph = build_graph(embodiment, mock_robot=True)
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in graph.nodes]
    for node, spec in zip(nodes, graph.nodes):
        assert node.kwargs["package"] == "faster_ros"
        assert node.kwargs["executable"] == spec.executable
        assert node.kwargs["parameters"] == [spec.parameters]


def test_launch_arguments_reach_the_parameters(fake_launch):
    path = data_dir("launch") / "r1lite_wbc.launch.py"
    description = runpy.run_path(str(path))["generate_launch_description"]()
    _, nodes = _evaluate(description, fake_launch, model="/opt/models/wbc", use_sim_time="true")
    policy = next(n for n in nodes if n.kwargs["name"] == "faster_policy")
    params = policy.kwargs["parameters"][0]
    assert params["model"] == "/opt/models/wbc" and params["use_sim_time"] is True
    assert "mock_robot" not in [n.kwargs["name"] for n in nodes]


def test_console_scripts_cover_every_executable():
    setup_py = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    graphs = [build_graph(e, mock_robot=True) for e in EMBODIMENTS]
    graphs.append(build_graph("aloha_sim", sim=True))
    for g in graphs:
        for spec in g.nodes:
            assert f'"{spec.executable} = {spec.module}:main"' in setup_py


def test_bringup_params_file_is_ros_params_yaml(tmp_path):
    from faster_ros.ros.bringup import node_command, params_file

    spec = build_graph("single_arm", model="m").node("faster_policy")
    path = params_file(spec, tmp_path)
    data = yaml.safe_load(path.read_text())
    assert data["faster_policy"]["ros__parameters"]["model"] == "m"
    cmd = node_command(spec, path)
    assert cmd[1:3] == ["-m", "faster_ros.ros.policy_node"]
    assert cmd[cmd.index("--params-file") + 1] == str(path)


def test_override_of_unknown_node_is_an_error():
    with pytest.raises(KeyError, match="unknown node 'planner'"):
        build_graph("single_arm", overrides={"planner": {"x": 1}})


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_core_never_imports_rclpy():
    package = Path(__file__).resolve().parents[1] / "faster_ros"
    offenders = []
    for path in package.rglob("*.py"):
        if "ros" in path.relative_to(package).parts[:1]:
            continue
        if any(m.split(".")[0] in ("rclpy", "launch", "launch_ros") and
               path.name != "launch_support.py" for m in imports_of(path)):
            offenders.append(str(path.relative_to(package)))
    assert offenders == []
