"""Every shipped policy (models/*_vla) loads with its bundled action tokenizer, fits its
embodiment and predicts one valid chunk; the embodiment's config names its FASTer policy."""

from types import SimpleNamespace

import numpy as np
import pytest

from faster_ros.embodiment import load_embodiment
from faster_ros.paths import data_dir

# shipped policy -> (embodiment, action tokenisation)
SHIPPED = {
    "g1_inspire_vla": ("g1_inspire", "fastervq"),
    "aloha_sim_vla": ("aloha_sim", "fastervq"),
    "aloha_sim_fast_vla": ("aloha_sim", "fast"),
    "aloha_sim_bins_vla": ("aloha_sim", "bins"),
}


@pytest.mark.parametrize("model", sorted(SHIPPED))
def test_shipped_policy_matches_embodiment_and_predicts(model):
    assert (data_dir("models") / model / "config.json").is_file(), f"{model} is not shipped"
    from faster_ros.policy import FASTerVLA
    from faster_ros.policy.action_codecs import BinningCodec, FASTCodec

    name, kind = SHIPPED[model]
    emb = load_embodiment(name)
    policy = FASTerVLA.from_pretrained(model)
    cfg = policy.config
    codec = {"fastervq": None, "fast": FASTCodec, "bins": BinningCodec}[kind]
    if codec is None:
        assert emb.policy.model == model  # the config names the FASTer policy
        assert cfg.tokens_per_chunk == emb.tokenizer.tokens_per_chunk
    else:
        assert isinstance(policy.action_tokenizer, codec)
    # FAST's BPE lists are decoded token by token (block 1): blocks predicted in parallel
    # gave lists of the wrong length (93 of 93 held-out chunks invalid at block 7)
    assert cfg.block_size == (1 if kind == "fast" else emb.policy.block_size)
    assert cfg.state_dim == emb.state_dim and cfg.action_dim == emb.action_dim
    assert cfg.chunk_size == emb.tokenizer.chunk_size
    assert cfg.cameras == tuple(c.name for c in emb.cameras)
    rng = np.random.default_rng(0)
    state = (policy.processor.state_low + policy.processor.state_high) / 2
    images = {c: rng.integers(0, 255, (168, 224, 3), np.uint8) for c in cfg.cameras}
    obs = SimpleNamespace(images=images, state=state, instruction=emb.policy.instruction)
    if cfg.state_history_s:  # the policy conditions on recent motion: here, standing still
        obs.state_history = np.stack([state] * len(cfg.state_history_s))
    out = policy.predict_action_chunk(obs, greedy=True)
    assert out.passes == -(-cfg.tokens_per_chunk // cfg.block_size)
    if kind == "fast" and not out.ok:  # FAST lists often fail to decode (45% held out, greedy):
        assert out.actions is None and "FAST decode failure" in out.invalid[0]  # reported
        return
    assert out.ok, out.invalid
    assert out.actions.shape == (emb.tokenizer.chunk_size, emb.action_dim)
    assert np.isfinite(out.actions).all()
    assert (out.actions >= emb.lower - 1e-6).all() and (out.actions <= emb.upper + 1e-6).all()
