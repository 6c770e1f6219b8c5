"""The tokenizers shipped in models/ serve the embodiment configs that name them, reconstruct
their held-out episodes, and the policy's bundled tokenizer still loads."""

from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import G1_NPZ, REPO_ROOT, SHARED_DATA

from faster_ros.embodiment import load_embodiment
from faster_ros.paths import data_dir
from faster_ros.tokenizer import FASTerVQ, evaluate
from faster_ros.tokenizer.dataset import Source, find_record

torch.set_num_threads(1)

# every embodiment config that names a tokenizer -> that tokenizer must be shipped and fit it
NAMED = sorted((p.stem, load_embodiment(p).policy.tokenizer)
               for p in (REPO_ROOT / "config").glob("*.yaml")
               if load_embodiment(p).policy.tokenizer)


def test_configs_name_the_shipped_tokenizers():
    assert dict(NAMED) == {"r1lite_bimanual": "r1lite_bimanual_vq",
                           "r1lite_wbc": "r1lite_wbc_vq"}
    assert (data_dir("models") / "g1_inspire_vq" / "config.json").is_file()


@pytest.mark.parametrize("embodiment,name", NAMED + [("g1_inspire", "g1_inspire_vq"),
                                                    ("g1_inspire", "g1_inspire_rel_vq")])
def test_shipped_model_loads_and_round_trips(embodiment, name):
    emb = load_embodiment(embodiment)
    tok = FASTerVQ.load(name, embodiment=emb)  # checks shapes, groups, K, dim names
    cfg = tok.config
    assert all(tok.quantizer.initialised()) and bool(tok.normalizer.fitted)
    assert cfg.tokens_per_chunk == emb.tokenizer.tokens_per_chunk
    assert (data_dir("models") / name / "README.md").is_file()
    # a smooth chunk around the middle of the training range: valid, finite, deterministic
    t = torch.linspace(0, 1, cfg.chunk_size)[None, :, None]
    x = tok.normalizer.center + 0.1 * tok.normalizer.half_range * torch.sin(3 * t + 1)
    codes = tok.encode(x)
    assert codes.shape == (1, *cfg.code_shape)
    recon = tok.decode(codes)
    assert recon.shape == x.shape and torch.isfinite(recon).all()
    assert torch.equal(tok.encode(x), codes) and torch.equal(tok.decode(codes), recon)
    assert torch.equal(tok.tokens_to_codes(tok.codes_to_tokens(codes)), codes)
    with pytest.raises(ValueError, match="codes out of range"):
        tok.decode(torch.full_like(codes, cfg.codebook_size))
    with pytest.raises(ValueError, match="wrong action width"):
        tok.encode(x[..., :-1])


def heldout_chunks(tok: FASTerVQ, path: Path, episodes: int) -> np.ndarray:
    """Chunks of the first ``episodes`` held-out episodes the model's config records for
    ``path`` (never trained on), mapped the way they were at training. Skips where the shared
    data is absent (a clone without ../shared)."""
    rec = find_record(tok.config.provenance, path)
    assert rec is not None, f"{path.name} is not in the model's training data"
    held, train = rec["heldout_episodes"], set(rec["train_episodes"])
    assert held and not set(held) & train
    if not path.is_file():
        pytest.skip("shared data not present")
    # relative chunks for a relative_to_state model, as its evaluation cuts them
    return evaluate.chunks_of(tok, Source.parse(rec["spec"]), held[:episodes], 8)


G1_ASAP = SHARED_DATA / "actions" / "asap_g1_23dof_30hz.npz"


@pytest.mark.parametrize("name,data,min_vrr,max_rel_mae", [
    # the target; measured on these 2 episodes: 0.9934 / 0.008 (all 10: see the card)
    ("g1_inspire_vq", G1_NPZ, 0.99, 0.01),
    # stand-ins trained 150 steps on other robots' data: 0.53-0.74 / 0.010-0.043 measured
    ("r1lite_wbc_vq", G1_ASAP, 0.7, 0.05),
    ("r1lite_wbc_vq", G1_NPZ, 0.5, 0.05),
    ("r1lite_bimanual_vq", G1_ASAP, 0.7, 0.02),
])
def test_shipped_model_on_heldout_episodes(name, data, min_vrr, max_rel_mae):
    tok = FASTerVQ.load(name)
    chunks = heldout_chunks(tok, data, 2)
    assert len(chunks) > 10
    err = np.abs(tok.decode(tok.encode(chunks)).numpy() - chunks)
    assert float((err < 0.01).mean()) >= min_vrr  # VRR(0.01) per element, physical units
    assert float((err / tok.normalizer.half_range.numpy()).mean()) <= max_rel_mae


def test_relative_g1_tokenizer_beats_fast_on_the_same_relative_chunks():
    """The issue's compression target on state-relative chunks: on held-out episodes FASTerVQ
    (78 tokens) is at least as accurate as FAST (DCT + BPE fitted on the same training
    episodes) while FAST needs at least twice the tokens. Three held-out episodes here (all ten:
    models/g1_inspire_rel_vq/README.md)."""
    from faster_ros.tokenizer.fast_baseline import FASTTokenizer

    tok = FASTerVQ.load("g1_inspire_rel_vq", embodiment="g1_inspire")
    assert tok.config.provenance["relative_to_state"] is True
    held = heldout_chunks(tok, G1_NPZ, 3)
    assert len(held) > 100
    vq_err = np.abs(tok.decode(tok.encode(held)).numpy() - held)
    vq_vrr = float((vq_err < 0.01).mean())
    assert vq_vrr >= 0.99
    fast = FASTTokenizer(32, 26, vocab_size=2048, scale=15).fit(evaluate.training_chunks(tok, 4))
    tokens = fast.encode(held)
    decoded = fast.decode(tokens)
    fast_vrr = float((np.abs(decoded.actions - held) < 0.01).mean())
    fast_tokens = float(np.mean([len(t) for t in tokens]))
    # measured on these 3 episodes (135 chunks): FASTerVQ 0.9956 with 78 tokens, FAST 0.9884
    # with 214.5
    assert fast_vrr <= vq_vrr and fast_tokens >= 2 * tok.config.tokens_per_chunk


def test_bundled_policy_tokenizer_still_loads():
    """models/g1_inspire_vla bundles a FASTerVQ written by an older version of this package."""
    path = data_dir("models") / "g1_inspire_vla" / "action_tokenizer"
    if not path.is_dir():
        pytest.skip("g1_inspire_vla is not shipped")
    tok = FASTerVQ.load(path)
    codes = torch.zeros(1, *tok.config.code_shape, dtype=torch.long)
    assert torch.isfinite(tok.decode(codes)).all()
