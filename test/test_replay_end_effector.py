"""faster-ros replay on an end-effector embodiment: errors in metres and radians.

A small synthetic bag (written here with rosbags) records one arm moving at a constant linear
velocity and turning at a constant rate about a fixed axis, as PoseStamped targets, plus a camera
and the gripper's joint state. A scripted policy answers the recorded motion with a known
perturbation (1 cm along x, 5 mrad about the turning axis, 1 mm on the gripper) in the
embodiment's own action representation; the report must give exactly those errors, in m, rad
and mm, with VRR at 1e-3 / 1e-2 in those units. ``--tokenizer-only`` with a small untrained
FASTerVQ must report the end-effector errors of its reconstructions, checked here against an
independent computation (scipy's rotations) on the analytically known chunks.
"""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from faster_ros.cli import main
from faster_ros.embodiment import load_embodiment

RATE_HZ = 15.0
DT = 1.0 / RATE_HZ
T0 = 100.0  # s, bag start (header stamps and receive times)
DURATION = 4.0
VELOCITY = np.array([0.05, -0.02, 0.01])  # m/s
P0 = np.array([0.4, 0.1, 0.0])
AXIS = np.array([1.0, 2.0, 3.0]) / math.sqrt(14.0)  # fixed (base-frame) turning axis
OMEGA = 0.3  # rad/s
R0 = Rotation.from_rotvec([0.2, -0.4, 0.9])  # start orientation
OFFSET_M, OFFSET_RAD, OFFSET_MM = 0.01, 0.005, 1.0
CAMERA, JOINTS, TARGET, FEEDBACK = "/cam/compressed", "/arm/joints", "/arm/target", "/arm/pose"
CHUNK = 8


def position(t):
    return P0 + VELOCITY * (np.asarray(t, dtype=np.float64)[..., None] - T0)


def rotation(t) -> Rotation:
    """R(t) = exp((t - T0) OMEGA AXIS) R0: constant turn about a base-frame axis."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    return Rotation.from_rotvec(np.outer(t - T0, AXIS * OMEGA)) * R0


def gripper(t):
    return 40.0 + 10.0 * np.sin(np.asarray(t, dtype=np.float64) - T0)


def config(position_mode: str, representation: str) -> dict:
    return {
        "name": f"ee_{position_mode}_{representation}",
        "dimensions": [{"name": "gripper", "unit": "mm", "limits": [0.0, 100.0],
                        "max_rate": 200.0, "max_seam_jump": 15.0}],
        "end_effectors": [{
            "name": "arm", "frame": "base_link", "position": position_mode,
            "rotation": representation, "gripper": "gripper",
            "workspace": {"lower": [0.0, -0.5, -0.5], "upper": [1.0, 0.5, 0.5]},
            "max_linear_speed": 0.3, "max_angular_speed": 1.0, "max_seam_translation": 0.03,
            "max_seam_rotation": 0.1, "feedback": {"topic": FEEDBACK, "max_age_s": 0.1},
            **({"max_step_translation": 0.05, "max_step_rotation": 0.25, "delta_frame": "base"}
               if position_mode == "delta" else {})}],
        "tokenizer": {"chunk_size": CHUNK, "time_patch": 2, "code_horizon": 2, "code_dims": 4,
                      "codebooks": 2, "codebook_size": 64, "latent_dim": 16,
                      "patch_groups": []},
        "policy": {"model": None, "tokenizer": None, "block_size": 4, "instruction": ""},
        "control": {"rate_hz": RATE_HZ, "execute_steps": 4, "blend_time_s": 0.2,
                    "max_seam_jump": 0.1, "watchdog_s": 0.5, "slop_s": 0.05},
        "cameras": [{"name": "head", "topic": CAMERA, "type": "CompressedImage",
                     "rate_hz": 30.0, "max_age_s": 0.2}],
        "joint_inputs": [{"topic": JOINTS, "max_age_s": 0.1, "joints": ["wrist", "gripper"]}],
        "outputs": [
            {"name": "arm", "kind": "pose_stamped", "topic": TARGET, "end_effector": "arm"},
            {"name": "gripper", "kind": "gripper_position", "topic": "/gripper/target",
             "dims": ["gripper"]}],
    }


def write_bag(path: Path, pose_topic: str = TARGET) -> Path:
    """Camera and joints at 30 Hz, poses at 30 Hz on ``pose_topic``, all stamped like their
    receive time."""
    from faster_ros.replay.bagwriter import BagWriter, typestore

    store = typestore()
    T = store.types
    ok, jpeg = cv2.imencode(".jpg", np.full((24, 32, 3), 128, np.uint8))
    assert ok

    def header(t):
        sec = int(math.floor(t))
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=int(round((t - sec) * 1e9))),
            frame_id="base_link")

    with BagWriter(path, "mcap") as w:
        w.add(CAMERA, "sensor_msgs/msg/CompressedImage")
        w.add(JOINTS, "sensor_msgs/msg/JointState")
        w.add(pose_topic, "geometry_msgs/msg/PoseStamped")
        for k in range(int(DURATION * 30) + 1):
            t = T0 + k / 30.0
            t_ns = int(round(t * 1e9))
            img = T["sensor_msgs/msg/CompressedImage"](header=header(t), format="jpeg",
                                                       data=jpeg.reshape(-1))
            w.write(CAMERA, t_ns, store.serialize_cdr(img, "sensor_msgs/msg/CompressedImage"))
            js = T["sensor_msgs/msg/JointState"](
                header=header(t), name=["wrist", "gripper"],
                position=np.array([0.1, gripper(t)]), velocity=np.zeros(0), effort=np.zeros(0))
            w.write(JOINTS, t_ns, store.serialize_cdr(js, "sensor_msgs/msg/JointState"))
            p = position(t)
            x, y, z, qw = rotation(t).as_quat()[0]  # scipy: x, y, z, w
            if k % 7 == 3:  # the same rotation, other sign: must not matter
                x, y, z, qw = -x, -y, -z, -qw
            pose = T["geometry_msgs/msg/PoseStamped"](
                header=header(t),
                pose=T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=p[0], y=p[1], z=p[2]),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=qw)))
            w.write(pose_topic, t_ns, store.serialize_cdr(pose,
                                                          "geometry_msgs/msg/PoseStamped"))
    return path


def rot6d(r: Rotation) -> np.ndarray:
    m = r.as_matrix()
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


class PerturbedPolicy:
    """Answers the recorded motion (known analytically) at each step's time, perturbed by
    OFFSET_M along x, OFFSET_RAD about AXIS and OFFSET_MM on the gripper. ``lag`` shifts the
    truth one period (the pose feedback is the pose reached one period after the action)."""

    def __init__(self, emb, lag: float = 0.0):
        self.emb, self.lag = emb, lag
        self.action_spec = (emb.action_dim, CHUNK)
        self.stamps = []

    def set_decoding(self, greedy):
        pass

    def predict_action_chunk(self, observation):
        from faster_ros.scripted_policy import ScriptedOutput

        emb = self.emb
        ee = emb.end_effectors[0]
        t = observation.stamp + DT * np.arange(CHUNK)
        self.stamps.append(observation.stamp)
        actions = np.zeros((CHUNK, emb.action_dim))
        actions[:, emb.index("gripper")] = gripper(t + DT) + OFFSET_MM  # future joint state
        tp = t + self.lag
        perturb = Rotation.from_rotvec(AXIS * OFFSET_RAD)
        if ee.is_delta:  # motion of each step (base frame), perturbed
            dp = position(tp) - position(tp - DT)
            dr = perturb * rotation(tp) * rotation(tp - DT).inv()
        else:
            dp, dr = position(tp), perturb * rotation(tp)
        actions[:, list(ee.position_indices)] = dp + [OFFSET_M, 0.0, 0.0]
        rotations = {"axis_angle": dr.as_rotvec(), "rot6d": rot6d(dr),
                     "quaternion": dr.as_quat()[:, [3, 0, 1, 2]],
                     "euler": dr.as_euler("ZYX")}  # transforms3d rzyx = scipy ZYX (intrinsic)
        actions[:, list(ee.rotation_indices)] = rotations[ee.rotation]
        return ScriptedOutput(actions=actions, timing={"total_ms": 1.0})


def _emb_file(tmp_path, position_mode, representation, extra=None) -> Path:
    data = config(position_mode, representation)
    if representation == "euler":
        data["end_effectors"][0]["euler_axes"] = "rzyx"
    data.update(extra or {})
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _replay(args, capsys):
    code = main(["replay", *map(str, args), "--no-progress"])
    return code, capsys.readouterr()


@pytest.mark.parametrize("position_mode, representation",
                         [("delta", "axis_angle"), ("absolute", "rot6d"),
                          ("absolute", "quaternion"), ("delta", "euler")])
def test_replay_reports_end_effector_errors_in_metres_and_radians(
        position_mode, representation, tmp_path, capsys, monkeypatch):
    emb_path = _emb_file(tmp_path, position_mode, representation)
    emb = load_embodiment(str(emb_path))
    policies = []

    def fake_load(model, tokenizer, device, deterministic, e):
        policies.append(PerturbedPolicy(e))
        return policies[-1]

    monkeypatch.setattr("faster_ros.inference.load_policy", fake_load)
    bag = write_bag(tmp_path / "ee_bag")
    out = tmp_path / "report"
    code, io = _replay([bag, "--embodiment", emb_path, "--model", "scripted", "--out", out],
                       capsys)
    assert code == 0, io.err
    assert [p.emb.name for p in policies] == [emb.name]
    assert {p.name for p in out.iterdir()} == {"report.json", "report.png", "report.html"}
    fig = json.loads((out / "report.json").read_text())["figures"]
    assert fig["published"] >= 10
    ee = fig["end_effector"]
    assert ee["compared_with"] == f"command {TARGET}"
    assert ee["units"] == {"translation": "m", "rotation": "rad", "arm/gripper": "mm"}
    arm = ee["actions"]["arm"]
    tr, ro, gr = arm["translation"], arm["rotation"], arm["gripper"]
    # the known perturbation, in metres, radians and millimetres
    assert tr["mean_m"] == pytest.approx(OFFSET_M, abs=1e-9)
    assert tr["max_m"] == pytest.approx(OFFSET_M, abs=1e-9)
    assert tr["vrr@0.001"] == 0.0
    assert ro["mean_rad"] == pytest.approx(OFFSET_RAD, abs=1e-9)
    assert ro["max_rad"] == pytest.approx(OFFSET_RAD, abs=1e-9)
    assert ro["vrr@0.001"] == 0.0 and ro["vrr@0.01"] == 1.0 and ro["invalid"] == 0
    assert gr["mean_unit"] == pytest.approx(OFFSET_MM, abs=1e-6)
    assert gr["vrr@0.01"] == 0.0
    # steps after the end of the recording are left out, not counted as errors
    assert tr["missing"] > 0 and tr["invalid"] == 0
    steps = ee["actions_per_step"]["arm"]
    assert len(steps["translation"]) == CHUNK
    assert all(v == pytest.approx(OFFSET_M, abs=1e-9) for v in steps["translation"])
    # baseline: hold the pose recorded before the chunk
    hold = ee["hold_pose"]["arm"]
    if position_mode == "delta":  # zero motion: off by one step of motion
        assert hold["translation"]["mean_m"] == pytest.approx(np.linalg.norm(VELOCITY) * DT,
                                                              abs=1e-9)
        assert hold["rotation"]["mean_rad"] == pytest.approx(OMEGA * DT, abs=1e-9)
        # the executor's poses: the 1 cm per step and 5 mrad per step add up along the chunk
        pose = ee["pose_per_step"]["arm"]
        for i in range(CHUNK):  # (perturbed about the turning axis: the angles add)
            assert pose["translation"][i] == pytest.approx(OFFSET_M * (i + 1), abs=1e-9)
            assert pose["rotation"][i] == pytest.approx(OFFSET_RAD * (i + 1), abs=1e-9)
        assert ee["pose"]["arm"]["translation"]["max_m"] == pytest.approx(OFFSET_M * CHUNK,
                                                                          abs=1e-9)
    else:  # pose held over the chunk: mean of |v| i dt over steps 1..H
        assert hold["translation"]["max_m"] == pytest.approx(
            np.linalg.norm(VELOCITY) * DT * CHUNK, abs=1e-9)
        assert hold["rotation"]["max_rad"] == pytest.approx(OMEGA * DT * CHUNK, abs=1e-9)
        assert "pose" not in ee
    page = (out / "report.html").read_text()
    assert "End effectors (m, rad)" in page and "translation" in page and "geodesic" in page
    assert "end effectors vs command /arm/target: arm: translation 0.0100 m" in io.out
    assert (out / "report.png").stat().st_size > 0


def test_replay_compares_with_pose_feedback_one_period_later(tmp_path, capsys, monkeypatch):
    """Without the targets, the pose feedback is the truth, shifted one period (the pose the
    action leads to), like future joint states."""
    emb_path = _emb_file(tmp_path, "delta", "axis_angle")

    def fake_load(model, tokenizer, device, deterministic, e):
        return PerturbedPolicy(e, lag=DT)

    monkeypatch.setattr("faster_ros.inference.load_policy", fake_load)
    bag = write_bag(tmp_path / "fb_bag", pose_topic=FEEDBACK)
    out = tmp_path / "report"
    code, io = _replay([bag, "--embodiment", emb_path, "--model", "s", "--out", out], capsys)
    assert code == 0, io.err
    report = json.loads((out / "report.json").read_text())
    ee = report["figures"]["end_effector"]
    assert ee["compared_with"] == f"pose feedback (future) {FEEDBACK}"
    assert any("compared with the pose feedback" in n for n in report["notes"])
    arm = ee["actions"]["arm"]
    assert arm["translation"]["mean_m"] == pytest.approx(OFFSET_M, abs=1e-9)
    assert arm["rotation"]["mean_rad"] == pytest.approx(OFFSET_RAD, abs=1e-9)


def test_tokenizer_only_reports_end_effector_errors(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from faster_ros.tokenizer.configuration import VQConfig
    from faster_ros.tokenizer.modeling import FASTerVQ

    torch.set_num_threads(1)
    torch.manual_seed(0)
    emb_path = _emb_file(tmp_path, "delta", "axis_angle")
    emb = load_embodiment(str(emb_path))
    cfg = VQConfig.from_embodiment(emb, "debug", codebook_size=emb.tokenizer.codebook_size,
                                   latent_dim=emb.tokenizer.latent_dim)
    tok = FASTerVQ(cfg)
    rng = np.random.default_rng(0)  # an untrained tokenizer, codebooks initialised on noise
    scale = np.array([10.0, 0.01, 0.01, 0.01, 0.05, 0.05, 0.05])
    noise = torch.from_numpy((rng.normal(size=(256, CHUNK, 7)) * scale + [40, 0, 0, 0, 0, 0,
                                                                           0]).astype(np.float32))
    tok.fit_normalizer(noise.reshape(-1, 7))
    tok.init_codebooks(noise)
    tok.eval()
    tok.save(tmp_path / "tok")
    bag = write_bag(tmp_path / "ee_bag")
    out = tmp_path / "tok_report"
    code, io = _replay([bag, "--embodiment", emb_path, "--tokenizer-only", "--tokenizer",
                        tmp_path / "tok", "--out", out], capsys)
    assert code == 0, io.err
    report = json.loads((out / "tokenizer_report.json").read_text())
    ee = report["end_effector"]
    assert ee["compared_with"] == f"command {TARGET}"
    assert ee["units"]["translation"] == "m" and ee["units"]["rotation"] == "rad"
    assert "FASTerVQ" in ee["reconstructions"]
    vq = ee["reconstructions"]["FASTerVQ"]["arm"]
    # independently: the chunks of the known motion, the same tokenizer, scipy's angles
    starts = T0 + np.asarray(report["chunk_starts_s"])
    assert len(starts) == report["chunks"] >= 3
    t = starts[:, None] + DT * np.arange(CHUNK)[None, :]  # (N, H)
    chunks = np.zeros((len(starts), CHUNK, emb.action_dim))
    e = emb.end_effectors[0]
    chunks[..., emb.index("gripper")] = gripper(t + DT)  # future joint states
    chunks[..., list(e.position_indices)] = position(t) - position(t - DT)
    turn = (rotation(t.ravel()) * rotation(t.ravel() - DT).inv()).as_rotvec()
    chunks[..., list(e.rotation_indices)] = turn.reshape(len(starts), CHUNK, 3)
    x = torch.from_numpy(chunks.astype(np.float32))
    with torch.no_grad():
        recon = tok.decode(tok.encode(x)).double().numpy()
    err_m = np.linalg.norm(recon[..., list(e.position_indices)]
                           - chunks[..., list(e.position_indices)], axis=-1)
    r_pred = Rotation.from_rotvec(recon[..., list(e.rotation_indices)].reshape(-1, 3))
    r_true = Rotation.from_rotvec(chunks[..., list(e.rotation_indices)].reshape(-1, 3))
    err_rad = (r_pred * r_true.inv()).magnitude()
    assert vq["translation"]["mean_m"] == pytest.approx(err_m.mean(), rel=1e-4, abs=1e-7)
    assert vq["translation"]["vrr@0.01"] == pytest.approx((err_m <= 0.01).mean(), abs=0.02)
    assert vq["rotation"]["mean_rad"] == pytest.approx(err_rad.mean(), rel=1e-4, abs=1e-7)
    assert vq["rotation"]["vrr@0.01"] == pytest.approx((err_rad <= 0.01).mean(), abs=0.02)
    assert vq["gripper"]["mean_unit"] == pytest.approx(
        np.abs(recon[..., 0] - chunks[..., 0]).mean(), rel=1e-3)
    assert len(ee["per_step"]["FASTerVQ"]["arm"]["rotation"]) == CHUNK
    assert (out / "tokenizer_end_effector.png").stat().st_size > 0
    assert "End effectors (m, rad)" in (out / "tokenizer_report.html").read_text()
    assert "end effectors, FASTerVQ: arm: translation" in io.out


def test_tokenizer_evaluation_hook_reports_r1lite_ee_in_metres_and_radians():
    """faster_ros.tokenizer.evaluate adds these figures for a tokenizer of an end-effector
    embodiment (by its config's name): both R1 Lite arms, a known perturbation on the left."""
    from faster_ros.control.pose_metrics import reconstruction_figures_for

    emb = load_embodiment("r1lite_ee")
    rng = np.random.default_rng(1)
    truth = rng.normal(scale=0.01, size=(5, emb.tokenizer.chunk_size, emb.action_dim))
    left = emb.end_effector("left_ee")
    pred = truth.copy()
    pred[..., left.position_indices[2]] += OFFSET_M  # 1 cm along z
    r_true = Rotation.from_rotvec(truth[..., list(left.rotation_indices)].reshape(-1, 3))
    turned = Rotation.from_rotvec([0.0, OFFSET_RAD, 0.0]) * r_true
    pred[..., list(left.rotation_indices)] = turned.as_rotvec().reshape(5, -1, 3)
    pred[..., emb.index("right_gripper")] += OFFSET_MM
    out = reconstruction_figures_for("r1lite_ee", truth, {"FASTerVQ": pred})
    assert out["units"] == {"translation": "m", "rotation": "rad", "left_ee/gripper": "mm",
                            "right_ee/gripper": "mm"}
    fig = out["reconstructions"]["FASTerVQ"]
    assert fig["left_ee"]["translation"]["mean_m"] == pytest.approx(OFFSET_M, abs=1e-12)
    assert fig["left_ee"]["rotation"]["mean_rad"] == pytest.approx(OFFSET_RAD, abs=1e-9)
    assert fig["left_ee"]["rotation"]["vrr@0.01"] == 1.0
    assert fig["left_ee"]["rotation"]["vrr@0.001"] == 0.0
    assert fig["right_ee"]["translation"]["max_m"] < 1e-12
    assert fig["right_ee"]["rotation"]["vrr@0.001"] == 1.0
    assert fig["right_ee"]["gripper"]["mean_unit"] == pytest.approx(OFFSET_MM)
    assert fig["left_ee"]["gripper"]["max_unit"] == 0.0
    assert len(out["per_step"]["FASTerVQ"]["left_ee"]["translation"]) == emb.tokenizer.chunk_size
    # a joint-space embodiment, or one that is not a config: per-element figures only
    assert reconstruction_figures_for("single_arm", truth[..., :7], {"x": truth[..., :7]}) == {}
    assert reconstruction_figures_for("no_such_robot", truth, {"x": pred}) == {}
