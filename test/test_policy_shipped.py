"""The shipped default policy (models/g1_inspire_vla) loads and predicts one chunk."""

from types import SimpleNamespace

import numpy as np
import pytest

from faster_ros.embodiment import load_embodiment
from faster_ros.paths import data_dir

MODEL = "g1_inspire_vla"
pytestmark = pytest.mark.skipif(not (data_dir("models") / MODEL / "config.json").is_file(),
                                reason="shipped policy not present")


def test_shipped_policy_matches_embodiment_and_predicts():
    from faster_ros.policy import FASTerVLA

    emb = load_embodiment("g1_inspire")
    policy = FASTerVLA.from_pretrained(emb.policy.model)
    cfg = policy.config
    assert emb.policy.model == MODEL
    assert cfg.block_size == emb.policy.block_size
    assert cfg.tokens_per_chunk == emb.tokenizer.tokens_per_chunk
    assert cfg.state_dim == emb.state_dim and cfg.action_dim == emb.action_dim
    assert cfg.cameras == tuple(c.name for c in emb.cameras)
    rng = np.random.default_rng(0)
    state = (policy.processor.state_low + policy.processor.state_high) / 2
    obs = SimpleNamespace(images={"cam_high": rng.integers(0, 255, (168, 224, 3), np.uint8)},
                          state=state, instruction=emb.policy.instruction)
    if cfg.state_history_s:  # the policy conditions on recent motion: here, standing still
        obs.state_history = np.stack([state] * len(cfg.state_history_s))
    out = policy.predict_action_chunk(obs, greedy=True)
    assert out.ok, out.invalid
    assert out.actions.shape == (emb.tokenizer.chunk_size, emb.action_dim)
    assert np.isfinite(out.actions).all()
    assert out.passes == -(-cfg.tokens_per_chunk // cfg.block_size)
    assert (out.actions >= emb.lower - 1e-6).all() and (out.actions <= emb.upper + 1e-6).all()
