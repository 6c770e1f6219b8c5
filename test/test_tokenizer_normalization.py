"""Quantile normalisation: round trip, clipping counted, constant dimensions."""

import numpy as np
import torch

from faster_ros.tokenizer.normalization import QuantileNormalizer


def test_round_trip_and_bounds():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(1000, 3)) * [1.0, 0.1, 5.0] + [0.0, 2.0, -1.0]
    norm = QuantileNormalizer(3, clip=10.0)
    norm.fit(data, 0.01, 0.99)
    x = torch.tensor(data[:50], dtype=torch.float32)
    out = norm.normalize(x)
    assert out.num_clipped == 0
    torch.testing.assert_close(norm.denormalize(out.values), x, atol=1e-5, rtol=1e-5)
    q = torch.tensor(np.quantile(data, [0.01, 0.99], axis=0), dtype=torch.float32)
    torch.testing.assert_close(norm.normalize(q).values, torch.tensor([[-1.0] * 3, [1.0] * 3]))


def test_clipping_is_counted_per_dimension():
    norm = QuantileNormalizer(2, clip=1.5)
    norm.fit(np.array([[0.0, 0.0], [1.0, 2.0]]), 0.0, 1.0)  # centers (0.5, 1), half (0.5, 1)
    x = torch.tensor([[[0.5, 1.0], [2.0, 1.0], [-1.0, 4.0]]])  # z: (0,0), (3,0), (-3,3)
    out = norm.normalize(x)
    assert out.clipped.tolist() == [2, 1]
    assert out.num_clipped == 3
    assert float(out.values.abs().max()) == 1.5


def test_constant_dimension_is_safe():
    norm = QuantileNormalizer(1)
    norm.fit(np.zeros((10, 1)), 0.01, 0.99)
    out = norm.normalize(torch.zeros(1, 1))
    assert torch.isfinite(out.values).all()
    assert float(norm.denormalize(out.values)) == 0.0


def test_constant_dimension_takes_fallback_limits():
    norm = QuantileNormalizer(2)
    data = np.stack([np.linspace(0, 1, 50), np.zeros(50)], axis=1)
    flat = norm.fit(data, 0.0, 1.0, limits=(np.array([-9.0, -0.5]), np.array([9.0, 0.5])))
    assert flat.tolist() == [False, True]
    assert norm.low.tolist() == [0.0, -0.5] and norm.high.tolist() == [1.0, 0.5]
    out = norm.normalize(torch.tensor([[0.5, 0.25]]))
    assert out.num_clipped == 0 and out.values.tolist() == [[0.0, 0.5]]
