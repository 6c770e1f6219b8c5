"""Embodiment configs: the shipped ones load; every kind of wrong config fails at load with a
message naming the file, the field and the bad value."""

import re

import numpy as np
import pytest
import yaml
from _configs import mutate, shipped
from _paths import G1_NPZ

from faster_ros.embodiment import EmbodimentConfigError, load_embodiment, parse_embodiment
from faster_ros.paths import data_dir

SHIPPED = sorted(p.stem for p in data_dir("config").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    emb = load_embodiment(name)
    assert emb.name == name
    covered = sorted(i for g in emb.outputs for i in g.indices)
    assert covered == list(range(emb.action_dim))
    patched = sorted(i for g in emb.tokenizer.patch_groups for i in g.indices)
    assert patched == list(range(emb.action_dim))
    assert np.all(emb.lower < emb.upper)


def test_required_embodiments_and_dofs():
    dofs = {n: load_embodiment(n).action_dim for n in
            ("r1lite_wbc", "r1lite_bimanual", "single_arm", "g1_inspire")}
    assert dofs == {"r1lite_wbc": 21, "r1lite_bimanual": 14, "single_arm": 7, "g1_inspire": 26}
    wbc = load_embodiment("r1lite_wbc")
    t = wbc.tokenizer
    assert (t.chunk_size, t.code_horizon, t.code_dims, t.codebooks) == (32, 2, 21, 3)
    assert t.tokens_per_chunk == 126
    kinds = {g.name: g.kind for g in wbc.outputs}
    assert kinds["chassis"] == "twist_base" and kinds["left_gripper"] == "gripper_position"
    assert wbc.is_velocity.sum() == 3
    assert {j.topic for j in wbc.joint_inputs} >= {"/hdas/feedback_arm_left",
                                                   "/hdas/feedback_torso"}


@pytest.mark.skipif(not G1_NPZ.exists(), reason="shared data not present")
def test_g1_config_matches_the_shared_dataset_names():
    emb = load_embodiment("g1_inspire")
    names = np.load(G1_NPZ)["names"]
    assert emb.dim_names == tuple(str(n) for n in names)


def _base() -> dict:
    return shipped("r1lite_wbc")


def _mutate(path: str, value=None, delete: bool = False) -> dict:
    return mutate("r1lite_wbc", path, value, delete)


def _wbc_dims() -> list[str]:
    return [d["name"] for d in _base()["dimensions"]]


BAD = [
    ("unknown top-level key", _mutate("colour", "blue"), r"<top level>: unknown key 'colour'"),
    ("unknown nested key", _mutate("control.rate", 10), r"control: unknown key 'rate'"),
    ("missing section", _mutate("tokenizer", delete=True), r"missing required key 'tokenizer'"),
    ("inverted limits", _mutate("dimensions[0].limits", [2.0, -2.0]),
     r"dimensions\[0\]\.limits: inverted limits: lower 2\.0 >= upper -2\.0"),
    ("duplicate dimension", _mutate("dimensions[1].name", "left_arm_joint1"),
     r"dimensions\[1\]\.name: duplicate dimension name 'left_arm_joint1'"),
    ("missing joint in group", _mutate("tokenizer.patch_groups[0].dims",
                                       ["left_arm_joint1", "left_arm_joint2"]),
     r"tokenizer\.patch_groups: dimension 'left_arm_joint3' is in no group"),
    ("overlapping groups", _mutate("tokenizer.patch_groups[1].dims",
                                   ["left_gripper", "left_arm_joint1"]),
     r"dimension 'left_arm_joint1' is in both 'left_arm' and 'left_gripper'"),
    ("unknown dimension in output", _mutate("outputs[0].dims", ["left_arm_joint9"]),
     r"outputs\[0\]\.dims: unknown dimension 'left_arm_joint9'"),
    ("unknown interface kind", _mutate("outputs[0].kind", "ethercat"),
     r"outputs\[0\]\.kind: unknown value 'ethercat'"),
    ("dimensions do not add up", _mutate("tokenizer.time_patch", 5),
     r"tokenizer\.time_patch: time_patch 5 does not divide chunk_size 32"),
    ("non-positive rate", _mutate("control.rate_hz", 0),
     r"control\.rate_hz: must be a positive finite number, got 0"),
    ("twist field count", _mutate("outputs[5].fields", ["linear.x", "angular.z"]),
     r"outputs\[5\]\.fields: 2 fields for 3 dims"),
    ("velocity dim to a joint interface", _mutate("dimensions[14].kind", "velocity"),
     r"dimension 'torso_joint1' of kind velocity cannot go to a joint_state_stream output"),
    ("joint read twice", _mutate("joint_inputs[1].joints", ["left_arm_joint1"]),
     r"joint_inputs\[1\]\.joints: joint 'left_arm_joint1' is read from two inputs"),
    ("block larger than a chunk's tokens", _mutate("policy.block_size", 500),
     r"policy\.block_size: block_size 500 exceeds the 126 tokens of one chunk"),
    ("home outside the limits", _mutate("dimensions[0].home", 9.0),
     r"dimensions\[0\]\.home: home 9\.0 is outside the limits"),
    ("home not a number", _mutate("dimensions[0].home", True),
     r"dimensions\[0\]\.home: expected a number, got True"),
    ("home of a velocity", _mutate("dimensions[18].home", 0.1),
     r"dimensions\[18\]\.home: a velocity dimension starts at 0: home is for positions"),
    ("limits not numbers", _mutate("dimensions[2].limits", ["low", "high"]),
     r"dimensions\[2\]\.limits: expected \[lower, upper\], got \['low', 'high'\]"),
    ("latch thresholds reversed", _mutate("dimensions[0].latch", dict(
        close_below=0.8, open_above=0.3, holding_gap=0.2)),
     r"dimensions\[0\]\.latch: expected lower < close_below < open_above < upper"),
    ("latch of a velocity", _mutate("dimensions[18].latch", dict(
        close_below=0.1, open_above=0.2, holding_gap=0.1)),
     r"dimensions\[18\]\.latch: a latch is for a gripper's position, not a velocity"),
    ("latch key missing", _mutate("dimensions[0].latch", dict(close_below=0.3, open_above=0.8)),
     r"dimensions\[0\]\.latch: expected numbers for exactly \['close_below', 'holding_gap', "
     r"'open_above'\]"),
]


@pytest.mark.parametrize("label,data,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_config_names_file_field_and_value(label, data, pattern):
    with pytest.raises(EmbodimentConfigError, match=pattern) as info:
        parse_embodiment(data, "config/broken.yaml")
    assert str(info.value).startswith("config/broken.yaml: ")


def test_home_pose_from_the_config_else_mid_limits():
    g1 = load_embodiment("g1_inspire")
    homes = {d["name"]: d["home"] for d in shipped("g1_inspire")["dimensions"]}
    np.testing.assert_allclose(g1.home, [homes[n] for n in g1.dim_names])
    assert np.all((g1.home >= g1.lower) & (g1.home <= g1.upper))
    wbc = load_embodiment("r1lite_wbc")  # no home given: mid-limits, velocities at rest
    want = np.where(wbc.is_velocity, 0.0, 0.5 * (wbc.lower + wbc.upper))
    np.testing.assert_allclose(wbc.home, want)
    one = parse_embodiment(_mutate("dimensions[0].home", 0.25), "x.yaml")
    assert one.home[0] == 0.25 and np.allclose(one.home[1:], want[1:])


def test_bad_config_file_on_disk_names_the_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_mutate("dimensions[0].limits", [1.0, 1.0])))
    with pytest.raises(EmbodimentConfigError, match=re.escape(str(path))):
        load_embodiment(path)
    path.write_text("name: [unclosed")
    with pytest.raises(EmbodimentConfigError, match="not valid YAML"):
        load_embodiment(path)


def test_unknown_embodiment_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="known: .*r1lite_wbc"):
        load_embodiment("r2d2")


def test_embodiment_is_frozen():
    emb = load_embodiment("single_arm")
    with pytest.raises(AttributeError):
        emb.name = "other"  # type: ignore[misc]
    assert _wbc_dims()[0] == "left_arm_joint1"
