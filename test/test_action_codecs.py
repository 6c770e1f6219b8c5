"""Baseline action tokenisations (256-bin, FAST) behind the policy's tokenizer interface."""

import numpy as np
import pytest
import torch
from policy_helpers import (  # noqa: F401  (single_thread: fixture)
    fake_batch,
    fake_observation,
    fit_steps,
    single_thread,
)

from faster_ros.policy import FASTerVLA, FASTerVLAConfig
from faster_ros.policy.action_codecs import (
    BinningCodec,
    FASTCodec,
    load_action_codec,
)
from faster_ros.policy.modeling import check_tokenizer, open_action_tokenizer

H, D = 8, 3


def smooth_chunks(n: int = 300, seed: int = 0) -> np.ndarray:
    """(n, H, D) smooth random motions: a random offset plus a slow sine per dimension."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, H)[None, :, None]
    return (rng.uniform(-1, 1, (n, 1, D)) + 0.3 * np.sin(
        2 * np.pi * rng.uniform(0.2, 1.0, (n, 1, D)) * t + rng.uniform(0, 6, (n, 1, D)))
            ).astype(np.float32)


def test_binning_round_trip_within_half_a_bin_and_time_major_tokens():
    chunks = smooth_chunks()
    codec = BinningCodec(H, D, bins=256).fit(chunks)
    codes = codec.encode(chunks)
    assert codes.shape == (len(chunks), 1, H, D) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) <= 255
    recon = codec.decode(codes).numpy()
    inside = (chunks >= codec.low) & (chunks <= codec.high)
    half_bin = (codec.high - codec.low) / 256 / 2
    err = np.abs(recon - chunks)
    assert (err[inside] <= np.broadcast_to(half_bin, err.shape)[inside] + 1e-6).all()
    assert not inside.all()  # the 1 % tails exist and are clipped to the end bins
    assert (recon >= codec.low - 1e-6).all() and (recon <= codec.high + 1e-6).all()
    tokens = codec.codes_to_tokens(codes)
    assert tokens.shape == (len(chunks), H * D)
    # time-major: token t * D + d is the bin of (step t, dimension d)
    assert torch.equal(tokens[:, 1 * D + 2], codes[:, 0, 1, 2])
    assert torch.equal(codec.tokens_to_codes(tokens), codes)


def test_binning_rejects_bad_input_by_name():
    codec = BinningCodec(H, D).fit(smooth_chunks())
    bad = smooth_chunks(2)
    bad[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(bad)
    with pytest.raises(ValueError, match=r"\(B, H=8, D=3\)"):
        codec.encode(np.zeros((1, H, D + 1), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        codec.decode(torch.full((1, 1, H, D), 256))


def test_fast_codec_pads_decodes_and_reports_failures():
    chunks = smooth_chunks(400)
    codec = FASTCodec.fit(chunks, vocab_size=256, scale=10.0)
    n = codec.config.tokens_per_chunk
    assert n == codec.config.provenance["fast_train_tokens"]["max"]
    codes = codec.encode(chunks)
    assert codes.shape == (len(chunks), 1, 1, n)
    tokens = codec.codes_to_tokens(codes)
    assert (tokens == codec.pad_id).any(1).float().mean() > 0.5  # most lists are shorter than N
    recon = codec.decode(codes).numpy()
    # FAST's only loss is rounding the scaled DCT coefficients (scale 10 in [-1, 1] units)
    low, high = np.quantile(chunks.reshape(-1, D), [0.01, 0.99], axis=0)
    span = high - low
    assert np.abs(recon - chunks).mean() < 0.05 * span.mean()
    assert codec.invalid_reasons(tokens) == [[] for _ in range(len(tokens))]
    # a list cut short (a <pad> early) cannot give H * D coefficients: reported, decoded as zeros
    cut = tokens[:2].clone()
    cut[:, 1:] = codec.pad_id
    reasons = codec.invalid_reasons(cut)
    assert all(r and "FAST decode failure" in r[0] for r in reasons)
    assert (codec.decode(codec.tokens_to_codes(cut)).numpy() == 0).all()


def test_fast_codec_refuses_a_chunk_longer_than_its_tokens():
    codec = FASTCodec.fit(smooth_chunks(200), vocab_size=256)
    chunk = smooth_chunks(1, seed=3)
    length = len(codec.fast.encode(chunk)[0])
    assert length > 1
    short = FASTCodec(codec.fast, max_tokens=length - 1)  # the same FAST, one token too few
    with pytest.raises(ValueError, match=f"takes {length} tokens, more than this codec's "
                                         f"{length - 1}"):
        short.encode(chunk)
    longest = codec.config.tokens_per_chunk
    roomy = FASTCodec.fit(smooth_chunks(200), vocab_size=256, max_tokens=longest + 8)
    assert roomy.config.tokens_per_chunk == longest + 8
    assert roomy.encode(smooth_chunks(3)).shape[-1] == longest + 8
    with pytest.raises(ValueError, match=f"shorter than the longest token list of the fitted "
                                         f"chunks \\({longest}\\)"):
        FASTCodec.fit(smooth_chunks(200), vocab_size=256, max_tokens=longest - 1)


@pytest.mark.parametrize("kind", ["bins", "fast"])
def test_codec_save_load_round_trip(tmp_path, kind):
    chunks = smooth_chunks()
    prov = {"relative_to_state": True, "heldout_episodes": ["ep9"]}
    codec = (BinningCodec(H, D, provenance=prov).fit(chunks) if kind == "bins"
             else FASTCodec.fit(chunks, vocab_size=256, provenance=prov))
    codec.save(tmp_path / "codec")
    loaded = open_action_tokenizer(tmp_path / "codec")
    assert type(loaded) is type(codec) and loaded.config == codec.config
    a = codec.decode(codec.encode(chunks))
    assert torch.equal(a, loaded.decode(loaded.encode(chunks)))
    (tmp_path / "codec" / "codec.json").write_text('{"kind": "wavelet"}')
    with pytest.raises(ValueError, match="unknown codec kind 'wavelet'"):
        load_action_codec(tmp_path / "codec")


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("kind", ["bins", "fast"])
def test_policy_trains_and_predicts_with_a_baseline_codec(kind):
    """The same FASTerVLA (backbone, expert, BAR) runs on a baseline's tokens: the config takes
    the codec's code shape, a training step lowers the loss, and a FAST list that does not
    decode makes the chunk invalid (no actions) instead of executing zeros."""
    chunks = smooth_chunks()
    codec = (BinningCodec(H, D, bins=32).fit(chunks) if kind == "bins"
             else FASTCodec.fit(chunks, vocab_size=64))
    tc = codec.config
    cfg = FASTerVLAConfig.preset(
        "debug", action_dim=D, chunk_size=H, codebook_size=tc.codebook_size, codebooks=1,
        code_horizon=tc.code_horizon, code_dims=tc.code_dims, block_size=4)
    check_tokenizer(cfg, codec)
    torch.manual_seed(0)
    model = FASTerVLA.build(cfg, state_low=np.zeros(cfg.state_dim),
                            state_high=np.ones(cfg.state_dim), action_low=np.full(D, -2.0),
                            action_high=np.full(D, 2.0), words=["pick up the cup"],
                            action_tokenizer=codec)
    tokens = codec.codes_to_tokens(codec.encode(chunks[:4]))
    losses = fit_steps(model, fake_batch(model, size=4, tokens=tokens), 25)
    assert losses[-1] < 0.6 * losses[0]
    model.eval()
    out = model.predict_action_chunk(fake_observation(cfg), greedy=True)
    assert out.tokens.shape == (tc.tokens_per_chunk,)
    if out.ok:
        assert out.actions.shape == (H, D) and np.isfinite(out.actions).all()
    if kind == "fast":  # a decoded list that cannot give a chunk makes the chunk invalid
        real = model.decoder.decode

        def cut_short(*args, **kwargs):
            result = real(*args, **kwargs)
            result.tokens[:, 1:] = codec.pad_id
            return result

        model.decoder.decode = cut_short
        out = model.predict_action_chunk(fake_observation(cfg), greedy=True)
        assert not out.ok and out.actions is None
        assert "FAST decode failure" in out.invalid[0]
