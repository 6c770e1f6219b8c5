"""Per-chunk stage tracing (faster_ros.ros.stage_trace): off by default, and the breakdown joins
the policy's and the executor's lines of the same chunk."""

import pytest

from faster_ros.ros.stage_trace import ENV, STAGES, StageTrace, read_stages


def test_off_unless_the_variable_names_a_directory(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    trace = StageTrace("faster_policy")
    assert not trace.enabled
    trace.write(1, {"received": 1.0})  # a no-op
    assert list(tmp_path.iterdir()) == []


def test_breakdown_joins_both_nodes_by_sequence(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "trace"))
    policy, executor = StageTrace("faster_policy"), StageTrace("faster_executor")
    t = 100.0
    policy.write(7, {"received": t, "woke": t + 0.001, "assembled": t + 0.003,
                     "predicted": t + 0.053, "built": t + 0.0535, "published": t + 0.054})
    executor.write(7, {"executor_in": t + 0.055, "gate_in": t + 0.0551, "gate_out": t + 0.0561,
                       "commands_out": t + 0.0571})
    policy.write(8, {"received": t + 1, "woke": t + 1, "assembled": t + 1, "predicted": t + 1,
                     "built": t + 1, "published": t + 1})  # never reached the executor
    stages = read_stages(tmp_path / "trace")
    assert list(stages) == [label for label, _, _ in STAGES]
    assert all(s["n"] == 1 for s in stages.values())  # chunk 8 is left out
    assert stages["assembly"]["p50"] == pytest.approx(2.0)
    assert stages["model (excluded from the overhead)"]["p50"] == pytest.approx(50.0)
    assert stages["transport to the executor"]["p50"] == pytest.approx(1.0)
    assert stages["executor: commands published"]["max"] == pytest.approx(1.0)
