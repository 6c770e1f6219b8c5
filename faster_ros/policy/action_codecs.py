"""Baseline action tokenisations for FASTerVLA: naive per-dimension binning and FAST.

FASTer (arXiv 2512.04952) compares its FASTerVQ codes with two tokenisations under the same
policy: 256-bin per-dimension discretisation (RT-2 / OpenVLA) and FAST (DCT + BPE, Pertsch et
al. 2025). Both are given here the interface FASTerVLA already uses for FASTerVQ, so the same
backbone, expert, BAR decoder, training loop, policy node and sim evaluation run all three:

    encode(actions (B, H, D)) -> codes (B, N_c, C_h, C_a)   codes_to_tokens / tokens_to_codes
    decode(codes, levels=None) -> actions (B, H, D)         config (shape fields, provenance)

- :class:`BinningCodec`: each action value -> one of 256 uniform bins over the training 1st-99th
  percentile range of its dimension (values outside are clipped, as in OpenVLA), decoded to the
  bin centre. One token per value: codes (1, H, D), tokens time-major (step 0's D values, then
  step 1's, ...), N = H * D (448 for a 32 x 14 chunk).
- :class:`FASTCodec`: the :class:`faster_ros.tokenizer.fast_baseline.FASTTokenizer` token list
  padded to a fixed N (the longest training chunk) with a <pad> token (id = the BPE vocabulary
  size), codes (1, 1, N). Decoding reads up to the first <pad>; a list that does not give
  exactly H * D DCT coefficients is a decode failure, reported per chunk by
  :meth:`FASTCodec.invalid_reasons` (the policy marks the chunk invalid; it is never executed).

Fitted on the same training episodes (and the same held-out split and state-relative actions) as
a reference FASTerVQ, so that the three policies differ in the action tokenisation only:

    python -m faster_ros.policy.action_codecs --data /work/sim_data/transfer_cube/lerobot \
        --like models/aloha_sim_vla/action_tokenizer --kind fast --out runs/aloha_fast_codec

Saved as a folder with ``codec.json`` (kind, shape, provenance, bounds) and, for FAST, the
tokenizer's ``fast.json`` + ``bpe.json``. :func:`load_action_codec` loads any of the three kinds.
No rclpy here.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from faster_ros.tokenizer import tokens as token_order
from faster_ros.tokenizer.fast_baseline import FASTTokenizer

CODEC_FILE = "codec.json"
KINDS = ("bins", "fast")


@dataclass(frozen=True)
class CodecConfig:
    """Shape of a baseline codec's codes, in the fields FASTerVLA reads from a tokenizer."""

    kind: str
    action_dim: int
    chunk_size: int
    codebooks: int
    code_horizon: int
    code_dims: int
    codebook_size: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"CodecConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("action_dim", "chunk_size", "codebooks", "code_horizon", "code_dims",
                     "codebook_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"CodecConfig.{name} must be a positive int, got {value!r}")

    @property
    def code_shape(self) -> tuple[int, int, int]:
        return self.codebooks, self.code_horizon, self.code_dims

    @property
    def tokens_per_chunk(self) -> int:
        return self.codebooks * self.code_horizon * self.code_dims


def _as_array(actions: Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(actions.detach().cpu() if isinstance(actions, Tensor) else actions)


def _check_actions(actions: Tensor | np.ndarray, chunk_size: int, action_dim: int
                   ) -> np.ndarray:
    x = _as_array(actions)
    if x.ndim != 3 or x.shape[1:] != (chunk_size, action_dim):
        raise ValueError(f"actions must be (B, H={chunk_size}, D={action_dim}), got shape "
                         f"{tuple(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"actions contain {int((~np.isfinite(x)).sum())} NaN/inf values")
    return x.astype(np.float64)


class _Codec:
    """Shared code checks and the policy's token order (:mod:`faster_ros.tokenizer.tokens`)."""

    config: CodecConfig

    def _check_codes(self, codes: Tensor | np.ndarray) -> Tensor:
        return token_order.check_codes(codes, self.config.code_shape, self.config.codebook_size)

    def codes_to_tokens(self, codes: Tensor | np.ndarray) -> Tensor:
        """codes (B, N_c, C_h, C_a) -> tokens (B, N) in policy order (see tokens.py)."""
        return token_order.codes_to_tokens(self._check_codes(codes))

    def tokens_to_codes(self, tokens: Tensor | np.ndarray) -> Tensor:
        """tokens (B, N) -> codes (B, N_c, C_h, C_a); inverse of codes_to_tokens."""
        t = tokens if isinstance(tokens, Tensor) else torch.as_tensor(np.asarray(tokens))
        return self._check_codes(token_order.tokens_to_codes(t, *self.config.code_shape))

    def invalid_reasons(self, tokens: Tensor | np.ndarray) -> list[list[str]]:
        """Per row of tokens (B, N): why it does not decode to a chunk (empty: it does)."""
        return [[] for _ in range(len(tokens))]

    def _write(self, path: str | Path, extra: dict[str, Any]) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / CODEC_FILE).write_text(json.dumps({**asdict(self.config), **extra}, indent=1)
                                      + "\n")
        return out


class BinningCodec(_Codec):
    """Per-dimension uniform binning (RT-2, OpenVLA): ``bins`` bins over the 1st-99th
    percentile range of each dimension in the training data; one token per action value."""

    def __init__(self, chunk_size: int, action_dim: int, bins: int = 256,
                 provenance: dict[str, Any] | None = None):
        self.config = CodecConfig("bins", action_dim, chunk_size, 1, chunk_size, action_dim,
                                  bins, dict(provenance or {}))
        self.low = np.full(action_dim, -1.0)
        self.high = np.full(action_dim, 1.0)

    def fit(self, chunks: np.ndarray, q_low: float = 0.01, q_high: float = 0.99
            ) -> BinningCodec:
        """Bounds from the training chunks (M, H, D)."""
        frames = _check_actions(chunks, self.config.chunk_size, self.config.action_dim)
        self.low, self.high = np.quantile(frames.reshape(-1, self.config.action_dim),
                                          [q_low, q_high], axis=0)
        return self

    def _span(self) -> np.ndarray:
        span = self.high - self.low
        return np.where(span > 1e-9, span, 1.0)  # a constant dimension: every value in bin 0

    def encode(self, actions: Tensor | np.ndarray) -> Tensor:
        """actions (B, H, D) physical -> codes (B, 1, H, D) bin indices in [0, bins)."""
        x = _check_actions(actions, self.config.chunk_size, self.config.action_dim)
        k = self.config.codebook_size
        bins = np.floor((x - self.low) / self._span() * k).clip(0, k - 1).astype(np.int64)
        return torch.from_numpy(bins)[:, None]

    def decode(self, codes: Tensor | np.ndarray, levels: int | None = None) -> Tensor:
        """codes (B, 1, H, D) -> actions (B, H, D) float32 at the bin centres (``levels`` is
        accepted for interface parity: there is one level)."""
        c = self._check_codes(codes)[:, 0].numpy()
        values = self.low + (c + 0.5) / self.config.codebook_size * self._span()
        return torch.from_numpy(values.astype(np.float32))

    def save(self, path: str | Path) -> Path:
        return self._write(path, dict(low=self.low.tolist(), high=self.high.tolist()))


class FASTCodec(_Codec):
    """FAST (DCT + scale + BPE) token lists padded with <pad> to a fixed length N."""

    def __init__(self, fast: FASTTokenizer, max_tokens: int,
                 provenance: dict[str, Any] | None = None):
        self.fast = fast
        self.pad_id = fast._require_bpe().get_vocab_size()
        self.config = CodecConfig("fast", fast.action_dim, fast.chunk_size, 1, 1, max_tokens,
                                  self.pad_id + 1, dict(provenance or {}))

    @classmethod
    def fit(cls, chunks: np.ndarray, vocab_size: int = 1024, scale: float = 10.0,
            provenance: dict[str, Any] | None = None,
            max_tokens: int | None = None) -> FASTCodec:
        """FAST fitted on the training chunks (M, H, D); N = their longest token list, or
        ``max_tokens`` (room for the chunks of a policy's larger dataset; not shorter than
        the longest list here)."""
        chunks = np.asarray(chunks)
        fast = FASTTokenizer(chunks.shape[1], chunks.shape[2], vocab_size, scale).fit(chunks)
        lengths = [len(ids) for ids in fast.encode(chunks)]
        prov = dict(provenance or {})
        prov["fast_train_tokens"] = dict(mean=round(float(np.mean(lengths)), 2),
                                         max=int(max(lengths)))
        if max_tokens is not None and max_tokens < max(lengths):
            raise ValueError(f"FAST: --max-tokens {max_tokens} is shorter than the longest "
                             f"token list of the fitted chunks ({max(lengths)})")
        return cls(fast, int(max_tokens or max(lengths)), prov)

    def encode(self, actions: Tensor | np.ndarray) -> Tensor:
        """actions (B, H, D) -> codes (B, 1, 1, N): FAST ids then <pad>. A chunk whose list is
        longer than N raises (it could not be decoded from N tokens)."""
        lists = self.fast.encode(_as_array(actions))  # FASTTokenizer checks shape and NaN
        n = self.config.code_dims
        out = np.full((len(lists), n), self.pad_id, dtype=np.int64)
        for i, ids in enumerate(lists):
            if len(ids) > n:
                raise ValueError(f"FAST: chunk {i} takes {len(ids)} tokens, more than this "
                                 f"codec's {n} (the longest of the chunks it was fitted on; "
                                 f"refit it with --max-tokens for a larger dataset)")
            out[i, : len(ids)] = ids
        return torch.from_numpy(out)[:, None, None]

    def _lists(self, codes: Tensor) -> list[list[int]]:
        """Each row's ids up to its first <pad>."""
        rows = []
        for row in codes.reshape(len(codes), -1).tolist():
            rows.append(row[: row.index(self.pad_id)] if self.pad_id in row else row)
        return rows

    def decode(self, codes: Tensor | np.ndarray, levels: int | None = None) -> Tensor:
        """codes (B, 1, 1, N) -> actions (B, H, D) float32; a chunk that fails to decode is
        zeros (see :meth:`invalid_reasons`)."""
        decoded = self.fast.decode(self._lists(self._check_codes(codes)))
        return torch.from_numpy(decoded.actions)

    def invalid_reasons(self, tokens: Tensor | np.ndarray) -> list[list[str]]:
        t = tokens if isinstance(tokens, Tensor) else torch.as_tensor(np.asarray(tokens))
        rows = self._lists(t.cpu().long().clamp(0, self.pad_id))
        failed = self.fast.decode(rows).failed
        h, d = self.config.chunk_size, self.config.action_dim
        return [[f"FAST decode failure: {len(r)} tokens do not give {h} x {d} DCT "
                 f"coefficients"] if bad else [] for r, bad in zip(rows, failed)]

    def save(self, path: str | Path) -> Path:
        out = self._write(path, {})
        self.fast.save(out)
        return out


def load_action_codec(path: str | Path) -> BinningCodec | FASTCodec:
    """A saved baseline codec folder (``codec.json``)."""
    root = Path(path)
    meta = json.loads((root / CODEC_FILE).read_text())
    kind = meta.get("kind")
    if kind == "bins":
        codec = BinningCodec(meta["chunk_size"], meta["action_dim"], meta["codebook_size"],
                             meta.get("provenance"))
        codec.low, codec.high = np.asarray(meta["low"]), np.asarray(meta["high"])
        return codec
    if kind == "fast":
        fast = FASTTokenizer.load(root)
        codec = FASTCodec(fast, meta["code_dims"], meta.get("provenance"))
        if codec.config.codebook_size != meta["codebook_size"]:
            raise ValueError(f"{root}: bpe.json has {codec.pad_id} tokens, codec.json says "
                             f"{meta['codebook_size'] - 1}")
        return codec
    raise ValueError(f"{root / CODEC_FILE}: unknown codec kind {kind!r}; expected one of {KINDS}")


def is_codec_dir(path: str | Path) -> bool:
    return (Path(path) / CODEC_FILE).is_file()


def training_windows(data: str, like: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Every stride-1 training window (M, H, D) of ``data`` under the split of the reference
    tokenizer ``like`` (relative to the state when ``like`` is), and the provenance to record."""
    from faster_ros.data import read_episodes
    from faster_ros.data.episode import chunk_windows
    from faster_ros.policy.action_tokenizer import relative_windows
    from faster_ros.policy.train import split_by_tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        episodes = read_episodes(data)
    train, held = split_by_tokenizer(episodes, like)
    relative = bool((like.config.provenance or {}).get("relative_to_state"))
    absolute = list((like.config.provenance or {}).get("absolute_dims", []))
    h = like.config.chunk_size
    if relative:
        windows = relative_windows(train, h, absolute_dims=absolute)
    else:
        windows = np.stack([c for ep in train for _, c in chunk_windows(ep.actions, h, 1)])
    return windows.astype(np.float32), dict(
        relative_to_state=relative, absolute_dims=absolute, data=str(data),
        train_episodes=[ep.name for ep in train], heldout_episodes=[ep.name for ep in held])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faster_ros.policy.action_codecs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset the reference tokenizer was fit on")
    p.add_argument("--like", required=True, help="reference FASTerVQ (split, relative actions)")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--out", required=True)
    p.add_argument("--bins", type=int, default=256, help="bins per dimension (kind bins)")
    p.add_argument("--vocab", type=int, default=1024, help="BPE vocabulary (kind fast)")
    p.add_argument("--scale", type=float, default=10.0, help="DCT scale (kind fast)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="kind fast: tokens per chunk N (default: the longest list of the "
                        "fitted chunks); room for a policy trained on more data than --data")
    args = p.parse_args(argv)
    from faster_ros.policy.modeling import open_action_tokenizer

    like = open_action_tokenizer(args.like)
    start = time.perf_counter()
    windows, prov = training_windows(args.data, like)
    if args.kind == "bins":
        codec: BinningCodec | FASTCodec = BinningCodec(
            windows.shape[1], windows.shape[2], args.bins, prov).fit(windows)
    else:
        codec = FASTCodec.fit(windows, args.vocab, args.scale, prov, args.max_tokens)
    recon = codec.decode(codec.encode(windows)).numpy()
    mae = float(np.abs(recon - windows).mean())
    codec.config.provenance.update(fit_wall_s=round(time.perf_counter() - start, 1),
                                   train_windows=len(windows), train_recon_mae=round(mae, 6))
    codec.save(args.out)
    print(f"{args.kind}: {len(windows)} windows, N={codec.config.tokens_per_chunk} tokens, "
          f"vocabulary {codec.config.codebook_size}, training reconstruction MAE {mae:.5f}; "
          f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
