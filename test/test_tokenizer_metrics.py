"""VRR and vocabulary statistics on hand-computed examples."""

import math

import numpy as np
import pytest

from faster_ros.tokenizer import metrics


def test_vrr_per_element_and_per_vector():
    gt = np.zeros((1, 2, 2))
    recon = np.array([[[0.005, 0.02], [0.004, 0.004]]])
    # elements: 0.005 ok, 0.02 bad, 0.004 ok, 0.004 ok -> 3 / 4
    assert metrics.vrr_per_element(recon, gt, 0.01) == pytest.approx(0.75)
    # vectors (L1 over D): 0.025 bad, 0.008 ok -> 1 / 2
    assert metrics.vrr_per_vector(recon, gt, 0.01) == pytest.approx(0.5)
    assert metrics.vrr_per_element(recon, gt, 0.001) == 0.0
    rep = metrics.reconstruction_report(recon, gt, (0.01,))
    assert rep["max_abs_error"] == pytest.approx(0.02)
    assert rep["mean_abs_error"] == pytest.approx(0.033 / 4)


def test_vocabulary_stats():
    stats = metrics.vocabulary_stats(np.array([0, 0, 1, 1]), vocab_size=4)
    assert stats["usage"] == 0.5
    assert stats["active"] == 2
    assert stats["f_max"] == 0.5
    assert stats["entropy_norm"] == pytest.approx(math.log(2) / math.log(4))
    uniform = metrics.vocabulary_stats(np.arange(8), vocab_size=8)
    assert uniform["entropy_norm"] == pytest.approx(1.0)
    assert uniform["f_max"] == pytest.approx(1 / 8)
