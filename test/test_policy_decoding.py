"""KV-cached BAR decoding against a slow, uncached reference decoder (test-only)."""

import numpy as np
import pytest
import torch
from policy_helpers import (
    FakeTokenizer,
    fake_batch,
    fake_observation,
    single_thread,  # noqa: F401  (fixture)
    tiny_policy,
)

from faster_ros.policy.masks import num_blocks

pytestmark = pytest.mark.usefixtures("single_thread")

def _context(model, batch):
    images = model.encode_images(batch["pixels"])
    return model.encode_context(images, batch["input_ids"], batch["text_valid"])


def reference_tokenwise_ar(model, context, valid):
    """Slow token-wise AR: recompute the whole sequence with a plain causal mask each step."""
    cfg = model.config
    b, p, _ = context.shape
    start = valid.sum(-1)
    tokens = torch.empty(b, 0, dtype=torch.long)
    for i in range(cfg.tokens_per_chunk):
        inputs = torch.cat([torch.full((b, 1), cfg.bos_block_id), tokens], dim=1)  # (B, i + 1)
        x = torch.cat([context, model.embed_actions(inputs)], dim=1)
        n = p + i + 1
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        mask[:p, :p] = True
        keys = torch.cat([valid, valid.new_ones(b, i + 1)], dim=1)
        ctx_pos = (valid.long().cumsum(-1) - 1).clamp(min=0)
        act_pos = start[:, None] + cfg.inference_spacing * torch.arange(i + 1)
        logits = model.expert.logits(model.expert(
            x, torch.cat([ctx_pos, act_pos], 1), mask[None, None] & keys[:, None, None, :]))
        logits[..., cfg.codebook_size:] = float("-inf")
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


@pytest.mark.parametrize("backbone", ["paligemma", "smolvlm"])
def test_bar_block1_greedy_equals_tokenwise_ar(backbone):
    model = tiny_policy(backbone)
    batch = fake_batch(model, size=3)  # prompts of different lengths: padded context
    with torch.no_grad():
        context, valid = _context(model, batch)
        ref = reference_tokenwise_ar(model, context, valid)
        out = model.decoder.decode(context, valid, model.config.tokens_per_chunk, 1,
                                   spacing=model.config.inference_spacing, greedy=True)
    assert out.passes == model.config.tokens_per_chunk
    assert torch.equal(out.tokens, ref)


@pytest.mark.parametrize("block_size", [1, 3, 5, 7])
def test_kv_cached_logits_equal_full_sequence_forward(block_size):
    model = tiny_policy()
    batch = fake_batch(model, size=2)
    with torch.no_grad():
        context, valid = _context(model, batch)
        out = model.decoder.decode(context, valid, model.config.tokens_per_chunk, block_size,
                                   spacing=2, greedy=False, top_k=5, temperature=1.0,
                                   generator=torch.Generator().manual_seed(1))
        full = model.teacher_forced_logits(context, valid, out.tokens, block_size, spacing=2)
    torch.testing.assert_close(out.logits, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 10])
def test_bar_passes_are_ceil_n_over_b(block_size):
    model = tiny_policy()
    out = model.predict_action_chunk(fake_observation(model.config), block_size=block_size,
                                     greedy=True)
    n = model.config.tokens_per_chunk
    assert out.passes == num_blocks(n, block_size) == -(-n // block_size)
    assert len(out.timing["block_ms"]) == out.passes


def _force_control_token(model):
    original = model.expert.logits

    def logits(hidden):
        out = original(hidden)
        out[..., model.config.bos_block_id] += 1e4
        return out

    model.expert.logits = logits


def test_invalid_control_token_is_reported_not_decoded():
    model = tiny_policy()
    _force_control_token(model)
    obs = fake_observation(model.config)
    out = model.predict_action_chunk(obs, greedy=True)  # masking on: still valid
    assert out.ok and out.actions is not None
    model.config = model.config.replace(mask_invalid=False)
    out = model.predict_action_chunk(obs, greedy=True)
    assert not out.ok and out.actions is None and out.codes is None
    assert out.num_invalid == model.config.tokens_per_chunk
    assert "control token <BoBlk>" in out.invalid[0]
    assert (out.tokens == model.config.bos_block_id).all()


def test_code_out_of_tokenizer_range_is_reported():
    model = tiny_policy()
    model.action_tokenizer = FakeTokenizer(model.config, codebook_size=4)
    found = False
    for seed in range(5):
        out = model.predict_action_chunk(fake_observation(model.config, seed), greedy=True)
        bad = (out.tokens >= 4).sum()
        assert out.num_invalid == bad
        assert (out.actions is None) == (bad > 0)
        found |= bad > 0
        if bad:
            assert "out of range [0, 4)" in " ".join(out.invalid)
    assert found


def test_sampling_respects_top_k_and_seed():
    model = tiny_policy()
    obs = fake_observation(model.config)
    model.reset(seed=3)
    a = model.predict_action_chunk(obs, greedy=False)
    model.reset(seed=3)
    b = model.predict_action_chunk(obs, greedy=False)
    assert np.array_equal(a.tokens, b.tokens)
    assert a.ok and (a.tokens < model.config.codebook_size).all()
