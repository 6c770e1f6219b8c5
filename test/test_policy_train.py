"""Training entry point (data -> BAR teacher forcing -> checkpoint / resume -> save) and the
offline evaluation, on synthetic episodes with a stand-in action tokenizer."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from policy_helpers import (
    FakeTokenizer,
    single_thread,  # noqa: F401  (fixture)
)

import faster_ros.data
import faster_ros.tokenizer
from faster_ros.data.episode import ArrayFrames, Episode
from faster_ros.policy import FASTerVLA, FASTerVLAConfig
from faster_ros.policy import train as train_mod
from faster_ros.policy.evaluate import evaluate

pytestmark = pytest.mark.usefixtures("single_thread")

class EncodingTokenizer(FakeTokenizer):
    """FakeTokenizer plus encode (bins the first N values of the chunk) and a provenance."""

    def __init__(self, cfg, heldout):
        super().__init__(cfg)
        self.config.provenance = {"data": [{"heldout_episodes": heldout}]}

    def encode(self, actions):
        c = self.config
        flat = torch.as_tensor(actions).flatten(1)[:, : c.tokens_per_chunk]
        codes = (flat.clamp(0, 0.999) * c.codebook_size).long()
        return codes.view(-1, c.codebooks, c.code_horizon, c.code_dims)


def synthetic_episodes(n=4, steps=24, dim=4):
    rng = np.random.default_rng(0)
    eps = []
    for i in range(n):
        t = np.linspace(0, 1, steps)[:, None]
        actions = (0.5 + 0.4 * np.sin(3 * t + i + np.arange(dim))).astype(np.float32)
        frames = ArrayFrames(rng.integers(0, 255, (steps, 20, 24, 3), dtype=np.uint8))
        eps.append(Episode(name=f"toy/episode_{i:06d}", fps=10.0, actions=actions,
                           action_names=tuple(f"j{k}" for k in range(dim)),
                           state=actions, state_names=tuple(f"s{k}" for k in range(dim)),
                           instruction="pick up the cup", frames={"head": frames}))
    return eps


def train_toy(tmp_path, tokenizer, *extra):
    """Two training steps of the debug preset on the toy episodes -> (out dir, loaded policy)."""
    out = tmp_path / "model"
    assert train_mod.main(["--data", "toy", "--tokenizer", "toy_vq", "--out", str(out),
                           "--run-dir", str(tmp_path / "run"), "--preset", "debug",
                           "--steps", "2", "--batch-size", "4", "--cache-dir",
                           str(tmp_path / "cache"), *extra]) == 0
    return out, FASTerVLA.from_pretrained(out, action_tokenizer=tokenizer)


@pytest.fixture
def toy_setup(monkeypatch):
    cfg = FASTerVLAConfig.preset("debug", action_dim=4, state_dim=4)
    tok = EncodingTokenizer(cfg, ["other_export/episode_000003"])
    tok.config.action_dim = 4
    monkeypatch.setattr(faster_ros.data, "read_episodes", lambda source: synthetic_episodes())
    monkeypatch.setattr(train_mod, "open_action_tokenizer", lambda p: tok)
    return tok


def test_train_checkpoint_resume_and_save(tmp_path, toy_setup):
    out, run = tmp_path / "model", tmp_path / "run"
    common = ["--data", "toy", "--tokenizer", "toy_vq", "--out", str(out), "--run-dir",
              str(run), "--preset", "debug", "--batch-size", "4", "--cache-dir",
              str(tmp_path / "cache"), "--checkpoint-every", "2"]
    assert train_mod.main([*common, "--steps", "4"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4
    assert train_mod.main([*common, "--steps", "6", "--resume"]) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["provenance"]["steps"] == 6
    assert meta["provenance"]["heldout_episodes"] == ["toy/episode_000003"]
    assert "toy/episode_000003" not in meta["provenance"]["train_episodes"]
    model = FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)
    metrics = evaluate(model, synthetic_episodes()[3:], stride=4, groups={"all": [0, 1, 2, 3]})
    assert metrics["windows"] == 5 and metrics["passes_per_chunk"] == 2
    for name in ("policy", "hold_state", "hold_last_action", "tokenizer_oracle"):
        assert set(metrics[name]) == {"mae", "mae@1", "mae@5", "mae_all"}


def test_relative_to_state_policy_adds_the_state_back(tmp_path, toy_setup):
    toy_setup.config.provenance["relative_to_state"] = True
    out, model = train_toy(tmp_path, toy_setup)
    assert model.config.relative_to_state
    tokens = torch.zeros(2, model.config.tokens_per_chunk, dtype=torch.long)
    state = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    _, actions = model.tokens_to_actions(tokens, state)  # the toy codec decodes 0 to 0
    np.testing.assert_allclose(actions, np.clip(np.broadcast_to(state[:, None], actions.shape),
                                                model.action_low.numpy(),
                                                model.action_high.numpy()), rtol=1e-6)
    with pytest.raises(ValueError, match="state"):
        model.tokens_to_actions(tokens)
    toy_setup.config.provenance["relative_to_state"] = False  # an absolute-action tokenizer
    with pytest.raises(ValueError, match="absolute actions"):
        FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)


def test_lr_schedule_warmup_then_cosine():
    cfg = FASTerVLAConfig.preset("debug", warmup_steps=10, min_lr_ratio=0.1)
    f = train_mod.lr_lambda(cfg, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


BAG = "/work/shared/data/bags/g1_inspire_ep1_db3"


@pytest.mark.skipif(not __import__("os").path.isdir(BAG), reason="shared G1 bag not present")
def test_dataset_from_rosbag2_recording(tmp_path):
    from faster_ros.data import read_episodes
    from faster_ros.policy.data import PolicyDataset
    from faster_ros.policy.modeling import FASTerVLA

    episodes = read_episodes(BAG)
    cfg = FASTerVLAConfig.preset("debug", action_dim=26, state_dim=26, chunk_size=32,
                                 cameras=("cam_high",))
    model = FASTerVLA.build(cfg, state_low=episodes[0].state.min(0),
                            state_high=episodes[0].state.max(0))
    tok = EncodingTokenizer(cfg, [])
    data = PolicyDataset(episodes, tok, model.processor, stride=60, cache_dir=tmp_path,
                         instruction="pick up the yellow bottle")
    assert len(data) == (len(episodes[0]) - 32) // 60 + 1
    batch = data.collate([0, 1])
    assert batch["pixels"].shape == (2, 1, 3, cfg.image_size, cfg.image_size)
    assert batch["tokens"].shape == (2, cfg.tokens_per_chunk)
    loss, _ = model(batch)
    assert torch.isfinite(loss)


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.isdir(BAG), reason="shared G1 bag not present")
def test_torchrun_ddp_two_processes(tmp_path):
    """torchrun (DDP, gloo on CPU) with two processes on the shared bag and the shipped
    policy's bundled tokenizer; rank 0 saves, the effective batch is doubled."""
    import sys
    from pathlib import Path

    from process_helpers import run_logged

    from faster_ros.paths import data_dir

    tokenizer = data_dir("models") / "g1_inspire_vla" / "action_tokenizer"
    if not tokenizer.is_dir():
        pytest.skip("shipped tokenizer not present")
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "model"
    # --standalone: rendezvous on a free localhost port, not the fixed default 29500
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "faster_ros.policy.train",
           "--data", BAG, "--tokenizer", str(tokenizer), "--preset", "debug", "--instruction",
           "pick up the bottle", "--out", str(out), "--run-dir", str(tmp_path / "run"),
           "--steps", "2", "--batch-size", "2", "--cache-dir", str(tmp_path / "cache")]
    log = tmp_path / "torchrun.log"
    assert run_logged([cmd], [log], timeout=240) == [0], log.read_text()[-3000:]
    prov = json.loads((out / "policy.json").read_text())["provenance"]
    assert prov["processes"] == 2 and prov["batch_size"] == 4 and prov["steps"] == 2


def test_bf16_autocast_forward_on_cpu():
    from policy_helpers import fake_batch, tiny_policy

    model = tiny_policy().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model(fake_batch(model, size=2))
    loss.backward()
    assert torch.isfinite(loss)


def test_state_history_policy_trains_saves_and_needs_the_history(tmp_path, toy_setup):
    """--state-history: the prompt also holds the motion s_t - s_(t-L) per lag (past states
    clamped to the episode start), the spans are saved, and inference refuses an observation
    without the history; --init-from copies a saved policy's weights (same held-out split)."""
    base = tmp_path / "base"
    common = ["--data", "toy", "--tokenizer", "toy_vq", "--preset", "debug", "--batch-size",
              "4", "--cache-dir", str(tmp_path / "cache")]
    assert train_mod.main([*common, "--out", str(base), "--run-dir", str(tmp_path / "r0"),
                           "--steps", "2"]) == 0
    out = tmp_path / "model"
    assert train_mod.main([*common, "--out", str(out), "--run-dir", str(tmp_path / "r1"),
                           "--steps", "1", "--state-history", "0.2", "0.5", "--init-from",
                           str(base), "--lr", "1e-12"]) == 0
    model = FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)
    plain = FASTerVLA.from_pretrained(base, action_tokenizer=toy_setup)
    assert model.config.state_history_s == (0.2, 0.5) and not plain.config.state_history_s
    source = json.loads((out / "policy.json").read_text())["provenance"]["init_from"]
    assert source["steps"] == 2 and [r["steps"] for r in source["chain"]] == [2]  # the lineage
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # lr 1e-12: unchanged
    proc = model.processor
    assert proc.history_span.shape == (2, 4) and (proc.history_span > 0).all()
    eps = synthetic_episodes()
    from faster_ros.policy.data import PolicyDataset

    data = PolicyDataset(eps[:1], toy_setup, proc, stride=1)
    ep = data.episodes[0]
    np.testing.assert_array_equal(data.history(1), ep.state[[0, 0]])  # 2 and 5 steps at 10 Hz
    np.testing.assert_array_equal(data.history(7), ep.state[[5, 2]])
    # 2 motion groups of 4 bins + ";" each; no motion -> middle bin
    assert len(data.prompt(7)) == len(plain.processor.prompt_ids("pick up the cup",
                                                                ep.state[7])) + 10
    still = proc.motion_bins(ep.state[7], np.stack([ep.state[7]] * 2))
    assert (still == model.config.state_bins // 2).all()
    obs = SimpleNamespace(images={"head": np.zeros((20, 24, 3), np.uint8)}, state=ep.state[7],
                          instruction="pick up the cup")
    with pytest.raises(ValueError, match="state history"):
        model.predict_action_chunk(obs)
    obs.state_history = data.history(7)
    assert model.predict_action_chunk(obs, greedy=True).actions.shape == (8, 4)
    obs.state_history = np.full((2, 4), np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        model.predict_action_chunk(obs)
    metrics = evaluate(model, eps[3:], stride=4)
    assert metrics["windows"] == 5 and np.isfinite(metrics["policy"]["mae"])
    toy_setup.config.provenance = {"data": [{"heldout_episodes": ["x/episode_000002"]}]}
    with pytest.raises(ValueError, match="held out"):
        train_mod.main([*common, "--out", str(tmp_path / "m2"), "--run-dir",
                        str(tmp_path / "r2"), "--steps", "1", "--init-from", str(base)])


def test_motion_prior_is_fitted_first_and_is_the_anchor_of_the_codes(tmp_path, toy_setup):
    """--prior-hidden: an MLP of the state and its motion is fitted (L1) before the policy and
    frozen; the codes encode a - (s_t + prior), decoding adds s_t + prior back."""
    toy_setup.config.provenance["relative_to_state"] = True
    out = tmp_path / "model"
    assert train_mod.main(["--data", "toy", "--tokenizer", "toy_vq", "--out", str(out),
                           "--run-dir", str(tmp_path / "run"), "--preset", "debug", "--steps",
                           "2", "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"),
                           "--state-history", "0.2", "--prior-hidden", "16", "--prior-steps",
                           "30"]) == 0
    model = FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)
    prov = json.loads((out / "policy.json").read_text())["provenance"]
    assert model.config.prior_hidden == 16 and prov["prior_steps"] == 30
    assert prov["prior_train_l1"] > 0
    assert (model.prior.std != 1).any()  # standardised with the training windows' statistics
    from faster_ros.policy.data import PolicyDataset

    eps = synthetic_episodes()
    data = PolicyDataset(eps[:1], toy_setup, model.processor, anchor=model.anchor)
    state, history = np.array(data.state(3)[None]), data.history(3)[None]
    with torch.no_grad():
        expected = state[:, None] + model.prior(torch.as_tensor(state, dtype=torch.float32),
                                                torch.as_tensor(history, dtype=torch.float32)
                                                ).numpy()
    np.testing.assert_allclose(model.anchor(state, history), expected, rtol=1e-5, atol=1e-6)
    tokens = data.tokens[3:4]
    _, actions = model.tokens_to_actions(tokens, state, history)
    codes = toy_setup.decode(toy_setup.tokens_to_codes(tokens)).numpy()
    np.testing.assert_allclose(actions, np.clip(codes + expected, model.action_low.numpy(),
                                                model.action_high.numpy()), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="state history"):
        model.anchor(state)
    metrics = evaluate(model, eps[3:], stride=4)
    assert np.isfinite(metrics["motion_prior"]["mae"]) and np.isfinite(metrics["policy"]["mae"])
    with pytest.raises(ValueError, match="prior_hidden needs"):
        FASTerVLAConfig.preset("debug", prior_hidden=8)
    # motion beyond the training span is clipped before the prior (no extrapolation)
    span = model.processor.history_span[None]
    np.testing.assert_allclose(model.anchor(state, state[:, None] - 1e3),
                               model.anchor(state, state[:, None] - span), rtol=1e-5, atol=1e-6)


def test_a_fast_codec_trains_a_token_wise_policy(tmp_path, monkeypatch):
    """FAST's variable-length BPE lists are decoded token by token (block 1) unless a block size
    is given; the saved policy reloads with its bundled codec and predicts a chunk."""
    from faster_ros.policy.action_codecs import FASTCodec

    eps = synthetic_episodes()
    monkeypatch.setattr(faster_ros.data, "read_episodes", lambda source: eps)
    chunks = np.stack([ep.actions[t: t + 8] for ep in eps[:3] for t in range(0, 17)])
    codec = FASTCodec.fit(chunks, vocab_size=64,
                          provenance={"heldout_episodes": ["toy/episode_000003"]})
    monkeypatch.setattr(train_mod, "open_action_tokenizer", lambda p: codec)
    out = tmp_path / "model"
    assert train_mod.main(["--data", "toy", "--tokenizer", "fast", "--out", str(out),
                           "--run-dir", str(tmp_path / "run"), "--preset", "debug",
                           "--steps", "2", "--batch-size", "4", "--bundle-tokenizer",
                           "--cache-dir", str(tmp_path / "cache")]) == 0
    model = FASTerVLA.from_pretrained(out)
    assert isinstance(model.action_tokenizer, FASTCodec)
    assert model.config.block_size == 1
    assert model.config.tokens_per_chunk == codec.config.tokens_per_chunk
    ep = eps[3]
    obs = SimpleNamespace(images={"head": np.zeros((20, 24, 3), np.uint8)}, state=ep.state[7],
                          instruction="pick up the cup")
    out = model.predict_action_chunk(obs, greedy=True)
    assert out.passes == codec.config.tokens_per_chunk
    assert out.ok or "FAST decode failure" in out.invalid[0]  # 2 steps: either is possible


def test_vision_init_starts_the_tower_from_a_pretrained_one_frozen_or_not(tmp_path, toy_setup):
    """--vision-init copies a pretrained tower + projector in (recorded in the provenance);
    --freeze-vision keeps them exactly; without it they train; freezing a random tower is
    refused."""
    from faster_ros.policy.vision_pretrain import pretrain_vision, save_vision

    cfg = FASTerVLAConfig.preset("debug")
    frames = np.random.default_rng(0).integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    result = pretrain_vision(cfg, frames, frames[:, :2, 0, 0].astype(np.float32), steps=2,
                             batch_size=8, progress=False)
    save_vision(tmp_path / "vis", cfg, result)
    common = ["--data", "toy", "--tokenizer", "toy_vq", "--preset", "debug", "--batch-size",
              "4", "--cache-dir", str(tmp_path / "cache"), "--steps", "3", "--lr", "1e-2",
              "--vision-init", str(tmp_path / "vis")]

    def tower(out):
        model = FASTerVLA.from_pretrained(out, action_tokenizer=toy_setup)
        inner = model.backbone.inner.state_dict()
        return {k: inner[k] for k in result.state}

    frozen = tmp_path / "frozen"
    assert train_mod.main([*common, "--out", str(frozen), "--run-dir", str(tmp_path / "r0"),
                           "--freeze-vision"]) == 0
    for key, value in tower(frozen).items():
        assert torch.equal(value, result.state[key]), key
    prov = json.loads((frozen / "policy.json").read_text())["provenance"]["vision_init"]
    assert prov["frozen"] is True and prov["path"].endswith("vis")
    trained = tmp_path / "trained"
    assert train_mod.main([*common, "--out", str(trained), "--run-dir",
                           str(tmp_path / "r1")]) == 0
    moved = [k for k, v in tower(trained).items() if not torch.equal(v, result.state[k])]
    assert moved, "the tower did not train without --freeze-vision"
    with pytest.raises(SystemExit, match="stay random"):
        train_mod.main(["--data", "toy", "--tokenizer", "toy_vq", "--out", str(tmp_path / "x"),
                        "--freeze-vision"])
    with pytest.raises(SystemExit, match="its own tower"):
        train_mod.main([*common, "--out", str(tmp_path / "y"), "--init-from", str(frozen)])


def test_several_datasets_are_concatenated_with_their_folder_in_front():
    from types import SimpleNamespace as NS

    def read(source):
        return synthetic_episodes(n=2) if "clean" in source else synthetic_episodes(n=3)

    eps = train_mod.read_sources(["/d/clean/lerobot", "/d/noisy/lerobot"], read)
    assert [ep.name for ep in eps] == [
        "clean/toy/episode_000000", "clean/toy/episode_000001", "noisy/toy/episode_000000",
        "noisy/toy/episode_000001", "noisy/toy/episode_000002"]
    assert train_mod.read_sources(["/d/clean"], read)[0].name == "toy/episode_000000"
    tok = NS(config=NS(provenance={"heldout_episodes": ["lerobot/episode_000001"]}))
    train, held = train_mod.split_by_tokenizer(eps, tok)
    assert [ep.name for ep in held] == ["clean/toy/episode_000001", "noisy/toy/episode_000001"]
    with pytest.raises(ValueError, match="collide"):
        train_mod.read_sources(["/a/x", "/b/x"], read)


def test_a_policy_without_state_in_its_prompt_and_state_dropout(tmp_path, toy_setup):
    """--no-prompt-state: the saved policy's prompt is the instruction alone whatever the
    state (a relative policy still adds its actions to the state); --state-dropout P: each
    training prompt loses its state with probability P, never at inference."""
    from faster_ros.policy.data import PolicyDataset

    toy_setup.config.provenance["relative_to_state"] = True
    common = ["--data", "toy", "--tokenizer", "toy_vq", "--preset", "debug", "--steps", "2",
              "--batch-size", "4", "--cache-dir", str(tmp_path / "cache")]
    blind, drop = tmp_path / "blind", tmp_path / "drop"
    assert train_mod.main([*common, "--out", str(blind), "--run-dir", str(tmp_path / "r0"),
                           "--no-prompt-state"]) == 0
    assert train_mod.main([*common, "--out", str(drop), "--run-dir", str(tmp_path / "r1"),
                           "--state-dropout", "0.5"]) == 0
    model = FASTerVLA.from_pretrained(blind, action_tokenizer=toy_setup)
    sighted = FASTerVLA.from_pretrained(drop, action_tokenizer=toy_setup)
    assert not model.config.prompt_state and sighted.config.prompt_state
    low, high = np.full(4, 0.2), np.full(4, 0.8)
    assert model.processor.prompt_ids("pick up the cup", low) == \
        model.processor.prompt_ids("pick up the cup", high)
    assert sighted.processor.prompt_ids("pick up the cup", low) != \
        sighted.processor.prompt_ids("pick up the cup", high)
    tokens = torch.zeros(1, model.config.tokens_per_chunk, dtype=torch.long)
    _, actions = model.tokens_to_actions(tokens, high[None])  # the toy codec decodes 0 to 0
    np.testing.assert_allclose(actions[0], np.broadcast_to(high, actions[0].shape), rtol=1e-6)

    eps = synthetic_episodes()[:2]
    proc = sighted.processor
    bare = len(proc.prompt_ids("pick up the cup", low, drop_state=True))
    full = len(proc.prompt_ids("pick up the cup", low))
    assert full == bare + 5  # "state" + 4 bins
    rng = np.random.default_rng(0)
    for p, expect in ((0.0, 0.0), (1.0, 1.0), (0.5, 0.5)):
        data = PolicyDataset(eps, toy_setup, proc, state_dropout=p)
        batch = data.collate(list(range(len(data))) * 20, rng)
        lengths = batch["text_valid"].sum(1)
        assert set(lengths.tolist()) <= {bare, full}
        assert abs(float((lengths == bare).float().mean()) - expect) < 0.05
        plain = data.collate(list(range(len(data))))  # no rng: inference-like, state kept
        assert (plain["text_valid"].sum(1) == full).all()
    with pytest.raises(ValueError, match="state_dropout"):
        PolicyDataset(eps, toy_setup, proc, state_dropout=1.5)


def test_absolute_dims_stay_absolute_through_tokenizer_windows_training_and_decoding(
        tmp_path, toy_setup):
    """openpi's delta mask: with the tokenizer's ``absolute_dims`` (e.g. the grippers) those
    dimensions are encoded and decoded as absolute values, the rest relative to the state; a
    tokenizer with another mask is refused."""
    from faster_ros.policy.action_tokenizer import (
        absolute_dims_for,
        relative_windows,
        window_starts,
    )
    from faster_ros.policy.modeling import check_tokenizer

    names = ["left_waist", "left_gripper", "right_waist", "right_gripper"]
    assert absolute_dims_for(names, ["gripper"]) == [1, 3]
    with pytest.raises(ValueError, match="'wrist' matches no action dimension"):
        absolute_dims_for(names, ["wrist"])
    eps = synthetic_episodes()[:1]
    ep = eps[0]
    windows = relative_windows(eps, 8, absolute_dims=[3])
    starts = window_starts(synthetic_episodes()[:2], 8)  # the tokenizer's --start-weight
    assert len(starts) == len(relative_windows(synthetic_episodes()[:2], 8)) == 34
    np.testing.assert_allclose(starts[[0, 5, 17]], [0.0, 0.5, 0.0])  # 10 Hz, 17 per episode
    np.testing.assert_allclose(windows[5, :, 3], ep.actions[5:13, 3])
    np.testing.assert_allclose(windows[5, :, :3], ep.actions[5:13, :3] - ep.state[5, :3])

    toy_setup.config.provenance.update(relative_to_state=True, absolute_dims=[3])
    _, model = train_toy(tmp_path, toy_setup)
    assert model.config.absolute_dims == (3,)
    state = np.array([[0.3, 0.4, 0.5, 0.6]])
    tokens = torch.zeros(1, model.config.tokens_per_chunk, dtype=torch.long)
    _, actions = model.tokens_to_actions(tokens, state)  # the toy codec decodes 0 to 0
    low = float(model.action_low[3])
    np.testing.assert_allclose(actions[0, :, :3], np.broadcast_to(state[0, :3], (8, 3)),
                               rtol=1e-6)
    np.testing.assert_allclose(actions[0, :, 3], max(0.0, low))  # absolute 0, clipped
    toy_setup.config.provenance["absolute_dims"] = []
    with pytest.raises(ValueError, match=r"absolute, the policy was trained with \[3\]"):
        check_tokenizer(model.config, toy_setup)
    with pytest.raises(ValueError, match="absolute_dims"):
        FASTerVLAConfig.preset("debug", action_dim=4, state_dim=4, absolute_dims=(3,))
    with pytest.raises(ValueError, match="distinct action dimensions"):
        FASTerVLAConfig.preset("debug", action_dim=4, state_dim=4, relative_to_state=True,
                               absolute_dims=(4,))


def test_start_weight_draws_the_first_windows_of_each_episode_more_often(toy_setup):
    from faster_ros.policy.data import PolicyDataset

    cfg = FASTerVLAConfig.preset("debug", action_dim=4, state_dim=4)
    proc = FASTerVLA.build(cfg, state_low=np.zeros(4), state_high=np.ones(4),
                           action_low=np.zeros(4), action_high=np.ones(4)).processor
    eps = synthetic_episodes(n=2)
    data = PolicyDataset(eps, toy_setup, proc, start_weight=(4.0, 0.5))  # 10 Hz: t < 5
    early = np.array([t < 5 for _, t in data.index])
    assert early.sum() == 10
    np.testing.assert_allclose(data.probabilities[early] / data.probabilities[~early][0], 4.0)
    data.collate = lambda indices, rng=None: indices  # what sample() draws
    picks = np.array(data.sample(20000, np.random.default_rng(0)))
    share = early[picks].mean()
    expect = 4 * 10 / (4 * 10 + (len(data) - 10))
    assert abs(share - expect) < 0.02
    plain = PolicyDataset(eps, toy_setup, proc)
    np.testing.assert_allclose(plain.probabilities, 1 / len(plain))
    with pytest.raises(ValueError, match="start_weight"):
        PolicyDataset(eps, toy_setup, proc, start_weight=(0.0, 1.0))


def test_pad_end_adds_the_last_starts_of_each_episode_holding_the_final_action(toy_setup):
    from faster_ros.policy.data import PolicyDataset

    cfg = FASTerVLAConfig.preset("debug", action_dim=4, state_dim=4)
    proc = FASTerVLA.build(cfg, state_low=np.zeros(4), state_high=np.ones(4),
                           action_low=np.zeros(4), action_high=np.ones(4)).processor
    eps = synthetic_episodes(n=2)
    plain = PolicyDataset(eps, toy_setup, proc)
    padded = PolicyDataset(eps, toy_setup, proc, pad_end=True)
    h = cfg.chunk_size
    assert len(plain) == sum(len(ep) - h + 1 for ep in eps)
    assert len(padded) == sum(len(ep) for ep in eps)
    e, t = padded.index[-1]  # the last step of the last episode: its action, held
    assert t == len(eps[e]) - 1
    np.testing.assert_allclose(padded.actions[-1], np.repeat(eps[e].actions[-1:], h, 0))
    assert padded.tokens.shape == (len(padded), plain.tokens.shape[1])


def test_chunk_l1_head_trains_beside_the_codes_and_leaves_decoding_alone(tmp_path, toy_setup):
    """--chunk-l1 W: a linear head on the first block's hidden states regresses the chunk in
    the tokenizer's normalised space; W x its L1 joins the BAR loss, the head is saved with the
    policy, and decoding (codes only) gives the same chunk as with the head's weights zeroed.
    A tokenizer without a normalizer is refused by name."""
    from faster_ros.policy.data import PolicyDataset
    from faster_ros.tokenizer.normalization import QuantileNormalizer

    with pytest.raises(ValueError, match="normalizer"):
        train_toy(tmp_path, toy_setup, "--chunk-l1", "0.5")
    normalizer = QuantileNormalizer(4)
    normalizer.fit(np.concatenate([ep.actions for ep in synthetic_episodes()]), 0.01, 0.99)
    toy_setup.normalizer = normalizer
    out, model = train_toy(tmp_path, toy_setup, "--chunk-l1", "0.5")
    assert model.config.chunk_l1_weight == 0.5 and model.chunk_head is not None
    data = PolicyDataset(synthetic_episodes()[:3], toy_setup, model.processor, chunk_targets=True)
    batch = data.collate([0, 5, 9])
    expected = normalizer.normalize(torch.as_tensor(data.actions[[0, 5, 9]])).values
    torch.testing.assert_close(batch["chunk"], expected.float())
    loss, metrics = model(batch)
    assert metrics["chunk_l1"] > 0
    assert metrics["loss"] == pytest.approx(metrics["bar_loss"] + 0.5 * metrics["chunk_l1"],
                                            rel=1e-4)
    held = synthetic_episodes()[3]
    obs = SimpleNamespace(images={"head": held.frames["head"].get(0)}, state=held.state[0],
                          instruction="pick up the cup")
    chunk = model.predict_action_chunk(obs, greedy=True)
    assert model.regressed_chunk(obs).shape == chunk.actions.shape
    with torch.no_grad():
        model.chunk_head.weight.zero_()
        model.chunk_head.bias.zero_()
    np.testing.assert_array_equal(model.predict_action_chunk(obs, greedy=True).actions,
                                  chunk.actions)
    # a zero head regresses the normalised 0: the middle of the tokenizer's range, clipped
    middle = normalizer.denormalize(torch.zeros(1, 8, 4))[0].numpy()
    np.testing.assert_allclose(model.regressed_chunk(obs), np.clip(
        middle, model.action_low.numpy(), model.action_high.numpy()), rtol=1e-6)
    plain_model = FASTerVLA.from_pretrained(train_toy(tmp_path / "plain", toy_setup)[0],
                                            action_tokenizer=toy_setup)
    with pytest.raises(ValueError, match="no chunk head"):
        plain_model.regressed_chunk(obs)
    plain = PolicyDataset(synthetic_episodes()[:3], toy_setup, model.processor)
    with pytest.raises(KeyError, match="chunk_targets"):
        model(plain.collate([0, 1]))
