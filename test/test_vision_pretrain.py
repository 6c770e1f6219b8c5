"""Pretraining a policy's vision tower on labelled frames, saving it and loading it into a policy
(faster_ros.policy.vision_pretrain), and the sim's labelled frames (faster_ros.sim.vision)."""

import json

import numpy as np
import pytest
import torch
from policy_helpers import single_thread  # noqa: F401  (fixture)

from faster_ros.policy import FASTerVLAConfig
from faster_ros.policy.backbones import build_backbone
from faster_ros.policy.vision_pretrain import (
    load_vision_init,
    pretrain_vision,
    save_vision,
    vision_parameters,
    vision_state,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def dot_frames(n, size=16, seed=0):
    """Black frames with one white 2x2 dot; target = the dot's (row, col) in pixels."""
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, size - 2, (n, 2))
    frames = np.zeros((n, size, size, 3), np.uint8)
    for f, (r, c) in zip(frames, pos):
        f[r:r + 2, c:c + 2] = 255
    return frames, pos.astype(np.float32)


def test_the_tower_learns_where_the_dot_is():
    cfg = FASTerVLAConfig.preset("debug", image_size=16, patch_size=4)
    frames, pos = dot_frames(1200)
    result = pretrain_vision(cfg, frames, pos, steps=400, batch_size=32, lr=3e-3,
                             val_fraction=0.1, eval_every=100, progress=False)
    guess_the_mean = np.linalg.norm(pos[:120] - pos[120:].mean(0), axis=1).mean()
    assert result.val_error < 0.5 * guess_the_mean, (result.val_error, guess_the_mean)
    assert [h[0] for h in result.history] == [100, 200, 300, 400]
    assert set(result.state) == set(vision_state(build_backbone(cfg, 8)))


def test_bad_frames_or_targets_are_named():
    cfg = FASTerVLAConfig.preset("debug")
    frames, pos = dot_frames(100)
    with pytest.raises(ValueError, match="images must be"):
        pretrain_vision(cfg, frames[:, :8], pos, steps=1)
    pos[3, 0] = np.nan
    with pytest.raises(ValueError, match="targets must be"):
        pretrain_vision(cfg, frames, pos, steps=1)


def test_saved_tower_loads_into_a_policy_backbone_and_nothing_else_changes(tmp_path):
    cfg = FASTerVLAConfig.preset("debug")
    frames, pos = dot_frames(200)
    result = pretrain_vision(cfg, frames, pos, steps=3, batch_size=8, progress=False)
    save_vision(tmp_path / "vis", cfg, result, task="dot")
    target = build_backbone(cfg, 50)  # another vocabulary: only the LM's table differs
    before = {k: v.clone() for k, v in target.inner.state_dict().items()}
    meta = load_vision_init(target, cfg, tmp_path / "vis")
    assert meta["provenance"] == {"task": "dot"}
    after = target.inner.state_dict()
    for key, value in after.items():
        if key in result.state:
            assert torch.equal(value, result.state[key]), key
        else:
            assert torch.equal(value, before[key]), key
    assert len(vision_parameters(target)) > 0


def test_a_tower_for_another_input_is_refused_by_name(tmp_path):
    cfg = FASTerVLAConfig.preset("debug")
    frames, pos = dot_frames(100)
    save_vision(tmp_path / "vis", cfg, pretrain_vision(cfg, frames, pos, steps=1, batch_size=8,
                                                       progress=False))
    bigger = FASTerVLAConfig.preset("debug", image_size=32)
    with pytest.raises(ValueError, match="image_size 16"):
        load_vision_init(build_backbone(bigger, 8), bigger, tmp_path / "vis")
    cropped = FASTerVLAConfig.preset("debug", image_crop=(0.1, 0.1, 0.9, 0.9))
    with pytest.raises(ValueError, match="image_crop"):
        load_vision_init(build_backbone(cropped, 8), cropped, tmp_path / "vis")
    with pytest.raises(FileNotFoundError, match="no pretrained vision tower"):
        load_vision_init(build_backbone(cfg, 8), cfg, tmp_path / "nothing")
    meta = json.loads((tmp_path / "vis" / "vision.json").read_text())
    assert meta["config"]["image_size"] == 16 and meta["image_crop"] == []
