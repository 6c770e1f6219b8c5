"""Shared test helpers for the FASTerVLA tests: a stand-in action tokenizer and tiny policies."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from faster_ros.policy import FASTerVLA, FASTerVLAConfig


@pytest.fixture
def single_thread():
    """One torch thread for the test: tiny models on a shared CPU otherwise stall on OpenMP
    barriers (tens of seconds instead of one). Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeTokenizer:
    """The FASTerVQ methods the policy calls, with a trivial codec: action[t, d] = code value of
    the flat token (t * D + d) mod N, scaled. Enough to test shapes and plumbing."""

    def __init__(self, cfg: FASTerVLAConfig, codebook_size: int | None = None):
        self.config = SimpleNamespace(
            codebook_size=codebook_size or cfg.codebook_size, codebooks=cfg.codebooks,
            code_horizon=cfg.code_horizon, code_dims=cfg.code_dims, chunk_size=cfg.chunk_size,
            action_dim=cfg.action_dim, tokens_per_chunk=cfg.tokens_per_chunk)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        c = self.config
        if ((tokens < 0) | (tokens >= c.codebook_size)).any():
            raise ValueError("codes out of range")
        return torch.as_tensor(tokens).reshape(-1, c.codebooks, c.code_horizon, c.code_dims)

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.flatten(1)

    def decode(self, codes: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        c = self.config
        flat = codes.flatten(1).float() / c.codebook_size  # (B, N)
        idx = torch.arange(c.chunk_size * c.action_dim) % flat.shape[1]
        return flat[:, idx].view(-1, c.chunk_size, c.action_dim)


def tiny_policy(backbone: str = "paligemma", seed: int = 0, **overrides) -> FASTerVLA:
    """The debug preset with config ``overrides``; ``locator``, ``cue_low`` and ``cue_high``
    go to ``FASTerVLA.build``."""
    torch.manual_seed(seed)
    extra = {k: overrides.pop(k) for k in ("locator", "cue_low", "cue_high") if k in overrides}
    cfg = FASTerVLAConfig.preset("debug", backbone=backbone, action_dim=4, **overrides)
    model = FASTerVLA.build(cfg, state_low=np.zeros(cfg.state_dim),
                            state_high=np.ones(cfg.state_dim), action_low=np.zeros(4),
                            action_high=np.ones(4), words=["pick up the cup"], **extra)
    model.action_tokenizer = FakeTokenizer(cfg)
    return model.eval()


def fake_observation(cfg: FASTerVLAConfig, seed: int = 0, instruction: str = "pick up the cup"):
    rng = np.random.default_rng(seed)
    names = cfg.cameras or tuple(f"cam{i}" for i in range(cfg.num_cameras))
    images = {n: rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for n in names}
    return SimpleNamespace(images=images, state=rng.uniform(0, 1, cfg.state_dim),
                           instruction=instruction)


def fit_steps(model: FASTerVLA, batch: dict[str, torch.Tensor], steps: int,
              lr: float = 3e-3) -> list[float]:
    """``steps`` AdamW steps on one batch (the model left in training mode); the losses."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, metrics = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss"])
    return losses


def fake_batch(model: FASTerVLA, size: int = 4, seed: int = 0,
               tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    obs = [fake_observation(cfg, seed + i, "pick up the cup" + " cup" * i) for i in range(size)]
    pixels = torch.stack([model.processor.images(model.processor.select_cameras(o.images))
                          for o in obs])
    ids, valid = model.processor.pad([model.processor.prompt_ids(o.instruction, o.state)
                                      for o in obs])
    if tokens is None:
        tokens = torch.randint(0, cfg.codebook_size, (size, cfg.tokens_per_chunk), generator=g)
    return dict(pixels=pixels, input_ids=ids, text_valid=valid, tokens=tokens)
