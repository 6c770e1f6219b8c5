"""The FAST action tokenizer (Pertsch et al. 2025) as a baseline for FASTerVQ evaluations.

    chunk (H, D) -> per-dimension quantile normalisation to [-1, 1] (1st / 99th percentile)
      -> DCT-II over time per dimension (scipy, norm='ortho') -> * scale (10) -> round
      -> flatten frequency-major (all dims of coefficient 0, then of 1, ...: low frequencies first,
         dimensions interleaved) -> integers shifted by the training minimum to characters
      -> BPE (Hugging Face ``tokenizers``) trained on the training chunks -> token ids

Decoding reverses it; a token sequence whose characters do not give exactly H * D coefficients is
a decode FAILURE (FAST then outputs zeros): failures are counted, never hidden. Coefficients
above the training range have no character in the BPE alphabet, are dropped by BPE and so also
surface as failures, as in the reference implementation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct
from tokenizers import Tokenizer, models, trainers


@dataclass
class FASTDecoded:
    """Decoded chunks (N, H, D) physical units (zeros where decoding failed) + failure mask."""

    actions: np.ndarray
    failed: np.ndarray

    @property
    def failures(self) -> int:
        return int(self.failed.sum())


class FASTTokenizer:
    """FAST: DCT + scale + BPE action tokenizer (arXiv 2501.09747), fitted on training chunks."""

    def __init__(self, chunk_size: int, action_dim: int, vocab_size: int = 1024,
                 scale: float = 10.0):
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.vocab_size, self.scale = vocab_size, float(scale)
        self.low = -np.ones(action_dim)
        self.high = np.ones(action_dim)
        self.min_token = 0
        self.bpe: Tokenizer | None = None

    # ------------------------------------------------------------------ fit

    def fit(self, chunks: np.ndarray, q_low: float = 0.01, q_high: float = 0.99) -> FASTTokenizer:
        """Quantile bounds from the training frames, BPE from the training chunks (N, H, D)."""
        chunks = self._check(chunks)
        frames = chunks.reshape(-1, self.action_dim)
        self.low, self.high = np.quantile(frames, [q_low, q_high], axis=0)
        coeffs = self._coefficients(chunks)  # (N, H * D) ints
        self.min_token = int(coeffs.min())
        alphabet_size = int(coeffs.max()) - self.min_token + 1
        if alphabet_size > self.vocab_size:
            raise ValueError(f"FAST: {alphabet_size} distinct coefficient values exceed the "
                             f"vocabulary {self.vocab_size}; lower the scale")
        bpe = Tokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size, min_frequency=2, show_progress=False,
            special_tokens=[], initial_alphabet=[chr(i) for i in range(alphabet_size)],
            max_token_length=10000,
        )
        bpe.train_from_iterator((self._to_string(c) for c in coeffs), trainer=trainer)
        self.bpe = bpe
        return self

    # ------------------------------------------------------------------ encode / decode

    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        """chunks (N, H, D) physical -> one variable-length token id list per chunk."""
        bpe = self._require_bpe()
        strings = [self._to_string(c) for c in self._coefficients(self._check(chunks))]
        return [e.ids for e in bpe.encode_batch(strings)]

    def decode(self, tokens: list[list[int]]) -> FASTDecoded:
        """Token id lists -> FASTDecoded (actions (N, H, D), failed (N,) bool)."""
        bpe = self._require_bpe()
        h, d = self.chunk_size, self.action_dim
        coeffs = np.zeros((len(tokens), h, d))
        failed = np.zeros(len(tokens), dtype=bool)
        vocab = bpe.get_vocab_size()
        for i, ids in enumerate(tokens):
            if any(not 0 <= int(t) < vocab for t in ids):
                failed[i] = True
                continue
            text = "".join(bpe.id_to_token(int(t)) for t in ids)
            values = np.fromiter(map(ord, text), dtype=np.int64, count=len(text))
            if values.size != h * d:
                failed[i] = True
                continue
            coeffs[i] = (values + self.min_token).reshape(h, d)  # frequency-major
        norm = idct(coeffs / self.scale, axis=1, norm="ortho")
        actions = self._denormalize(norm)
        actions[failed] = 0.0
        return FASTDecoded(actions.astype(np.float32), failed)

    # ------------------------------------------------------------------ helpers

    def _coefficients(self, chunks: np.ndarray) -> np.ndarray:
        """(N, H, D) -> (N, H * D) rounded scaled DCT coefficients, frequency-major."""
        norm = 2.0 * (chunks - self.low) / self._span() - 1.0
        coeffs = np.around(dct(norm, axis=1, norm="ortho") * self.scale).astype(np.int64)
        return coeffs.reshape(len(chunks), -1)

    def _to_string(self, coeffs: np.ndarray) -> str:
        return "".join(map(chr, np.maximum(coeffs - self.min_token, 0)))

    def _denormalize(self, norm: np.ndarray) -> np.ndarray:
        return (norm + 1.0) / 2.0 * self._span() + self.low

    def _span(self) -> np.ndarray:
        """high - low per dimension; 1 where the training quantiles coincide (a dimension that
        is constant in >= 98 % of the frames, e.g. zero-padded stand-in data), so its rare
        non-constant values do not become astronomically large DCT coefficients."""
        span = np.asarray(self.high - self.low, dtype=np.float64)
        return np.where(span > 1e-6, span, 1.0)

    def _check(self, chunks: np.ndarray) -> np.ndarray:
        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or chunks.shape[1:] != (self.chunk_size, self.action_dim):
            raise ValueError(f"FAST expects chunks (N, {self.chunk_size}, {self.action_dim}), "
                             f"got {chunks.shape}")
        if not np.isfinite(chunks).all():
            raise ValueError("FAST: chunks contain NaN or inf")
        return chunks

    def _require_bpe(self) -> Tokenizer:
        if self.bpe is None:
            raise RuntimeError("FASTTokenizer.fit() has not been called")
        return self.bpe

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._require_bpe().save(str(path / "bpe.json"))
        meta = {"chunk_size": self.chunk_size, "action_dim": self.action_dim,
                "vocab_size": self.vocab_size, "scale": self.scale, "min_token": self.min_token,
                "low": self.low.tolist(), "high": self.high.tolist()}
        (path / "fast.json").write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FASTTokenizer:
        path = Path(path)
        meta = json.loads((path / "fast.json").read_text())
        tok = cls(meta["chunk_size"], meta["action_dim"], meta["vocab_size"], meta["scale"])
        tok.min_token = meta["min_token"]
        tok.low, tok.high = np.array(meta["low"]), np.array(meta["high"])
        tok.bpe = Tokenizer.from_file(str(path / "bpe.json"))
        return tok
