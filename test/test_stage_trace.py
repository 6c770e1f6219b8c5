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
    policy._gc_pauses.append((t + 0.002, t + 0.0025, 2))  # a 0.5 ms pause during assembly
    executor._gc_pauses.append((t + 0.056, t + 0.060, 1))  # 1.1 ms of it before commands_out
    policy.write(7, {"received": t, "woke": t + 0.001, "assembled": t + 0.003,
                     "predicted": t + 0.053, "built": t + 0.0535, "published": t + 0.054})
    executor.write(7, {"executor_in": t + 0.055, "gate_in": t + 0.0551, "gate_out": t + 0.0561,
                       "commands_out": t + 0.0571})
    policy.write(8, {"received": t + 1, "woke": t + 1, "assembled": t + 1, "predicted": t + 1,
                     "built": t + 1, "published": t + 1})  # never reached the executor
    for trace in (policy, executor):
        trace.close()
    stages = read_stages(tmp_path / "trace")
    gc_label = "garbage-collector pauses inside the window"
    assert list(stages) == [label for label, _, _ in STAGES] + [gc_label]
    assert all(s["n"] == 1 for s in stages.values())  # chunk 8 is left out
    assert stages[gc_label]["max"] == pytest.approx(0.5 + 1.1)
    assert stages[gc_label]["chunks_hit"] == 1
    assert stages["assembly"]["p50"] == pytest.approx(2.0)
    assert stages["model (excluded from the overhead)"]["p50"] == pytest.approx(50.0)
    assert stages["transport to the executor"]["p50"] == pytest.approx(1.0)
    assert stages["executor: commands published"]["max"] == pytest.approx(1.0)


def test_collector_pauses_are_recorded_when_tracing(monkeypatch, tmp_path):
    import gc
    import json

    monkeypatch.setenv(ENV, str(tmp_path))
    trace = StageTrace("faster_policy")
    try:
        gc.collect()
        trace.write(1, {"received": 1.0})
    finally:
        trace.close()
    lines = (tmp_path / "faster_policy.gc.jsonl").read_text().splitlines()
    pauses = [json.loads(line) for line in lines]
    assert any(p["generation"] == 2 and p["end"] >= p["start"] for p in pauses)
    gc.collect()  # closed: no longer recorded
    trace.write(2, {"received": 2.0})
    assert (tmp_path / "faster_policy.gc.jsonl").read_text().splitlines() == lines
