"""FAST baseline: round trip on smooth data, decode failures counted."""

import numpy as np
import pytest

from faster_ros.tokenizer.fast_baseline import FASTTokenizer


@pytest.fixture(scope="module")
def smooth_chunks():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 16)[None, :, None]
    freq = rng.uniform(0.2, 1.5, size=(300, 1, 3))
    phase = rng.uniform(0, 6, size=(300, 1, 3))
    return (np.sin(2 * np.pi * freq * t + phase) * [0.5, 1.0, 0.2]).astype(np.float32)


def test_round_trip_on_smooth_data(smooth_chunks, tmp_path):
    fast = FASTTokenizer(16, 3, vocab_size=512, scale=30).fit(smooth_chunks[:250])
    test = smooth_chunks[250:]
    tokens = fast.encode(test)
    assert all(0 < len(t) < 16 * 3 for t in tokens)  # BPE compresses
    decoded = fast.decode(tokens)
    assert decoded.failures == 0
    assert np.abs(decoded.actions - test).max() < 0.05
    fast.save(tmp_path)
    again = FASTTokenizer.load(tmp_path)
    assert again.encode(test) == tokens


def test_corrupted_sequences_are_counted_as_failures(smooth_chunks):
    fast = FASTTokenizer(16, 3, vocab_size=256, scale=10).fit(smooth_chunks)
    tokens = fast.encode(smooth_chunks[:3])
    corrupted = [tokens[0][:-1], tokens[1] + [10_000], tokens[2]]
    decoded = fast.decode(corrupted)
    assert decoded.failed.tolist() == [True, True, False]
    assert decoded.failures == 2
    assert np.all(decoded.actions[:2] == 0)


def test_bad_input_raises():
    fast = FASTTokenizer(16, 3)
    with pytest.raises(ValueError, match="expects chunks"):
        fast.fit(np.zeros((2, 8, 3)))
    with pytest.raises(RuntimeError, match="fit"):
        fast.encode(np.zeros((1, 16, 3)))
