"""The object locator (faster_ros.policy.locator) and a policy that reads its estimate as object
bins in the prompt (config cues): training, the prompt, save / load, errors."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from policy_helpers import (
    fake_observation,
    single_thread,  # noqa: F401  (fixture)
    tiny_policy,
)
from test_policy_train import toy_setup  # noqa: F401  (fixture)

from faster_ros.policy import FASTerVLA
from faster_ros.policy import train as train_mod
from faster_ros.policy.locator import LocatorConfig, ObjectLocator, train_locator

pytestmark = pytest.mark.usefixtures("single_thread")


def red_square_frames(n: int, h: int = 32, w: int = 48, seed: int = 0):
    """(n, h, w, 3) uint8 grey frames with a 3x3 red square at a random place, and its centre
    (x, y) in pixels."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, h, w, 3), 90, np.uint8)
    centres = np.stack([rng.integers(2, w - 2, n), rng.integers(2, h - 2, n)], 1)
    for f, (x, y) in zip(frames, centres):
        f[y - 1:y + 2, x - 1:x + 2] = (220, 20, 20)
    return frames, centres.astype(np.float32)


def test_locator_config_names_what_is_wrong_and_prepares_frames():
    with pytest.raises(ValueError, match="crop"):
        LocatorConfig(camera="top", names=("x",), crop=(0.5, 0.0, 0.4, 1.0))
    with pytest.raises(ValueError, match="multiples of 4"):
        LocatorConfig(camera="top", names=("x",), height=30)
    with pytest.raises(ValueError, match="at least one output"):
        LocatorConfig(camera="top", names=())
    cfg = LocatorConfig(camera="top", names=("x",), crop=(0.5, 0.5, 1.0, 1.0), height=8, width=12)
    frame = np.zeros((16, 24, 3), np.uint8)
    frame[8:, 12:] = 200  # only the bottom-right quarter is bright: the crop sees only it
    assert cfg.prepare(frame).shape == (8, 12, 3) and cfg.prepare(frame).min() == 200
    with pytest.raises(ValueError, match="uint8"):
        cfg.prepare(frame.astype(np.float32))


def test_locator_learns_where_a_small_square_is_and_survives_save_load(tmp_path):
    frames, centres = red_square_frames(900)
    cfg = LocatorConfig(camera="top", names=("x", "y"), height=32, width=48, maps=8)
    model, report = train_locator(cfg, frames, centres, steps=300, batch_size=32, lr=3e-3,
                                  progress=False)
    spread = float(np.linalg.norm(centres - centres.mean(0), axis=1).mean())  # the mean guess
    assert report.val_error < 0.25 * spread, (report.val_error, spread)
    test, truth = red_square_frames(50, seed=1)
    error = np.linalg.norm(model.locate(list(test)) - truth, axis=1).mean()
    assert error < 0.25 * spread
    model.save(tmp_path / "loc", task="toy")
    loaded = ObjectLocator.load(tmp_path / "loc")
    assert loaded.cfg == cfg
    assert np.allclose(loaded.locate(list(test)), model.locate(list(test)), atol=1e-5)
    with pytest.raises(ValueError, match="targets"):
        train_locator(cfg, frames, centres[:, :1], steps=1, progress=False)


def toy_locator(camera: str = "cam0") -> ObjectLocator:
    cfg = LocatorConfig(camera=camera, names=("cube_x", "cube_y"), height=16, width=20, maps=4)
    torch.manual_seed(0)
    return ObjectLocator(cfg).eval()


def test_a_policy_with_cues_puts_its_locators_estimate_in_the_prompt(tmp_path):
    locator = toy_locator()
    model = tiny_policy(cues=2, locator=locator, cue_low=np.array([-1.0, -1.0]),
                        cue_high=np.array([1.0, 1.0]))
    proc = model.processor
    text = proc.prompt_text("pick", np.zeros(proc.cfg.state_dim), cues=np.array([-1.0, 0.99]))
    assert text.endswith(f" object 0 {proc.cfg.state_bins - 1} ;")
    assert proc.cue_bins(np.array([-5.0, 5.0])).tolist() == [0, proc.cfg.state_bins - 1]
    with pytest.raises(ValueError, match="object cues"):
        proc.prompt_text("pick", np.zeros(proc.cfg.state_dim))
    with pytest.raises(ValueError, match="finite"):
        proc.cue_bins(np.array([np.nan, 0.0]))
    obs = fake_observation(model.config)
    estimate = model.locate(obs.images)
    assert estimate.shape == (2,)
    _, ids, _ = model.prepare(obs)
    expected = proc.prompt_ids(obs.instruction, obs.state, cues=estimate)
    assert ids[0].tolist() == expected
    assert not any(p.requires_grad for p in model.locator.parameters())
    model.save_pretrained(tmp_path / "m")
    loaded = FASTerVLA.from_pretrained(tmp_path / "m", action_tokenizer=model.action_tokenizer)
    assert loaded.locator.cfg == locator.cfg
    assert np.allclose(loaded.locate(obs.images), estimate, atol=1e-6)
    assert np.array_equal(loaded.processor.cue_high, proc.cue_high)
    a, b = (m.predict_action_chunk(obs, greedy=True) for m in (model, loaded))
    assert np.array_equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="lacks camera 'cam0'"):
        model.predict_action_chunk(SimpleNamespace(images={"other": obs.images["cam0"]},
                                                   state=obs.state, instruction="pick"))


def test_cues_and_locator_must_come_together():
    with pytest.raises(ValueError, match="must match"):
        tiny_policy(cues=2, cue_low=np.zeros(2), cue_high=np.ones(2))  # no locator
    with pytest.raises(ValueError, match="cue_low"):
        tiny_policy(cues=2, locator=toy_locator())  # no ranges
    with pytest.raises(ValueError, match="must match"):
        tiny_policy(cues=3, locator=toy_locator(), cue_low=np.zeros(3), cue_high=np.ones(3))


def test_train_with_a_locator_bins_its_estimate_on_every_frame(tmp_path, toy_setup):  # noqa: F811
    """--locator: the estimate on every training frame is computed once (cached), its range
    becomes the cue bins, the prompts hold it, and the saved policy carries the locator."""
    toy_locator("head").save(tmp_path / "loc")
    out = tmp_path / "model"
    assert train_mod.main(["--data", "toy", "--tokenizer", "toy_vq", "--out", str(out),
                           "--run-dir", str(tmp_path / "run"), "--preset", "debug",
                           "--steps", "2", "--batch-size", "4", "--cache-dir",
                           str(tmp_path / "cache"), "--locator", str(tmp_path / "loc")]) == 0
    assert len(list((tmp_path / "cache").glob("cues_*.npy"))) == 3  # 3 training episodes
    policy = FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)
    assert policy.config.cues == 2
    cached = np.concatenate([np.load(p) for p in (tmp_path / "cache").glob("cues_*.npy")])
    assert np.allclose(policy.processor.cue_low, cached.min(0), atol=1e-6)
    assert np.allclose(policy.processor.cue_high, cached.max(0), atol=1e-6)
    prov = json.loads((out / "policy.json").read_text())["provenance"]
    assert prov["locator"].endswith("loc")
    obs = SimpleNamespace(images={"head": np.zeros((20, 24, 3), np.uint8)},
                          state=np.full(4, 0.5), instruction="pick up the cup")
    assert policy.predict_action_chunk(obs, greedy=True).tokens.shape == (
        policy.config.tokens_per_chunk,)
