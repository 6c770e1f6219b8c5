"""End-effector action groups in embodiment configs: derived dimensions, patch groups and pose
outputs, and every kind of wrong end-effector config failing at load with file, field and value."""


import numpy as np
import pytest
from _configs import mutate, shipped

from faster_ros.embodiment import EmbodimentConfigError, load_embodiment, parse_embodiment


def test_r1lite_ee_derives_dims_patch_groups_and_pose_outputs():
    emb = load_embodiment("r1lite_ee")
    assert emb.action_dim == 14
    left = emb.end_effector("left_ee")
    assert left.position_dims == ("left_ee_x", "left_ee_y", "left_ee_z")
    assert left.rotation_dims == ("left_ee_rx", "left_ee_ry", "left_ee_rz")
    assert [emb.dim_names[i] for i in left.pose_indices] == list(left.pose_dims)
    groups = {g.name: g.dims for g in emb.tokenizer.patch_groups}
    assert groups["left_ee_position"] == left.position_dims
    assert groups["left_ee_rotation"] == left.rotation_dims
    assert groups["left_ee_gripper"] == ("left_gripper",)
    pose = {g.name: g for g in emb.outputs if g.kind == "pose_stamped"}
    assert pose["left_ee"].topic == "/motion_target/target_pose_arm_left"
    assert pose["left_ee"].indices == left.pose_indices and pose["left_ee"].frame_id
    # delta dims are bounded per step; no joint reports them
    i = emb.index("left_ee_x")
    assert (emb.lower[i], emb.upper[i]) == (-0.05, 0.05) and emb.dimensions[i].joint is None


@pytest.mark.parametrize("rotation,axes,size", [("axis_angle", None, 3), ("euler", "rzyx", 3),
                                                ("quaternion", None, 4), ("rot6d", None, 6)])
def test_every_rotation_representation_parses(rotation, axes, size):
    data = _base()
    ee = data["end_effectors"][0]
    ee["rotation"] = rotation
    ee["position"] = "absolute"
    for key in ("delta_frame", "max_step_translation", "max_step_rotation"):
        ee.pop(key)
    if axes:
        ee["euler_axes"] = axes
    emb = parse_embodiment(data, "mem.yaml")
    left = emb.end_effector("left_ee")
    assert len(left.rotation_indices) == size and left.euler_axes == axes
    # absolute positions are bounded by the workspace box
    i = emb.index("left_ee_z")
    assert (emb.lower[i], emb.upper[i]) == (-0.45, 0.35)
    assert np.all(emb.lower < emb.upper)


def _base() -> dict:
    return shipped("r1lite_ee")


def _mutate(path: str, value=None, delete: bool = False) -> dict:
    return mutate("r1lite_ee", path, value, delete)


BAD = [
    ("unknown rotation", _mutate("end_effectors[0].rotation", "rodrigues"),
     r"end_effectors\[0\]\.rotation: unknown value 'rodrigues'"),
    ("euler without axes", _mutate("end_effectors[0].rotation", "euler"),
     r"end_effectors\[0\]\.euler_axes: Euler angles need an axis order: unknown value None"),
    ("axes on a non-euler", _mutate("end_effectors[0].euler_axes", "sxyz"),
     r"end_effectors\[0\]\.euler_axes: 'euler_axes' only applies to rotation: euler"),
    ("unknown position mode", _mutate("end_effectors[0].position", "relative"),
     r"end_effectors\[0\]\.position: unknown value 'relative'"),
    ("inverted workspace", _mutate("end_effectors[1].workspace.lower", [0.15, 0.2, -0.45]),
     r"end_effectors\[1\]\.workspace: inverted workspace in y"),
    ("workspace of two numbers", _mutate("end_effectors[0].workspace.upper", [0.7, 0.5]),
     r"end_effectors\[0\]\.workspace\.upper: expected \[x, y, z\]"),
    ("zero speed", _mutate("end_effectors[0].max_angular_speed", 0),
     r"end_effectors\[0\]\.max_angular_speed: must be a positive finite number, got 0"),
    ("delta without step bound", _mutate("end_effectors[0].max_step_rotation", delete=True),
     r"end_effectors\[0\]\.max_step_rotation: missing required key"),
    ("unknown gripper", _mutate("end_effectors[0].gripper", "left_hand"),
     r"end_effectors\[0\]\.gripper: unknown gripper dimension 'left_hand'"),
    ("shared gripper", _mutate("end_effectors[1].gripper", "left_gripper"),
     r"end_effectors\[1\]\.gripper: gripper 'left_gripper' is already the gripper of 'left_ee'"),
    ("duplicate end effector", _mutate("end_effectors[1].name", "left_ee"),
     r"end_effectors\[1\]\.name: duplicate end effector name 'left_ee'"),
    ("pose output for an unknown end effector", _mutate("outputs[0].end_effector", "left_hand"),
     r"outputs\[0\]\.end_effector: unknown end effector 'left_hand'"),
    ("pose output with dims", _mutate("outputs[0].dims", ["left_ee_x"]),
     r"outputs\[0\]\.dims: a pose_stamped output takes no 'dims'"),
    ("end effector on a joint output", _mutate("outputs[1].end_effector", "left_ee"),
     r"outputs\[1\]\.end_effector: 'end_effector' only applies to pose_stamped outputs"),
    ("end effector routed nowhere", {**_base(), "outputs": _base()["outputs"][1:]},
     r"outputs: dimension 'left_ee_x' is in no group"),
    ("end-effector dim in an explicit patch group",
     _mutate("tokenizer.patch_groups", [{"name": "arm", "dims": ["left_ee_x"]}]),
     r"tokenizer\.patch_groups\[0\]\.dims: dimension 'left_ee_x' is in the derived patch group "
     r"'left_ee_position'"),
    ("feedback topic is a joint input",
     _mutate("end_effectors[0].feedback.topic", "/hdas/feedback_arm_left"),
     r"end_effectors: end effector 'left_ee': feedback topic '/hdas/feedback_arm_left' is also "
     r"a joint input"),
]


@pytest.mark.parametrize("label,data,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_end_effector_config_names_file_field_and_value(label, data, pattern):
    with pytest.raises(EmbodimentConfigError, match=pattern) as info:
        parse_embodiment(data, "config/broken.yaml")
    assert str(info.value).startswith("config/broken.yaml: ")


def test_tokenizer_patches_position_rotation_and_gripper_separately():
    torch = pytest.importorskip("torch")
    from faster_ros.tokenizer.configuration import VQConfig
    from faster_ros.tokenizer.modeling import FASTerVQ

    torch.set_num_threads(1)
    emb = load_embodiment("r1lite_ee")
    cfg = VQConfig.from_embodiment(emb, preset="debug")
    assert cfg.group_names == ("left_ee_position", "left_ee_rotation", "left_ee_gripper",
                               "right_ee_position", "right_ee_rotation", "right_ee_gripper")
    assert cfg.patch_groups[:3] == ((2, 3, 4), (5, 6, 7), (0,))
    model = FASTerVQ(cfg)
    actions = torch.randn(2, emb.tokenizer.chunk_size, emb.action_dim) * 0.01
    codes = model.encode(actions)
    assert tuple(codes.shape) == (2, 3, 2, 14)
    assert tuple(model.decode(codes).shape) == tuple(actions.shape)
