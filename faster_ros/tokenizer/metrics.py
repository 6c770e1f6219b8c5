"""Reconstruction and vocabulary metrics of action tokenizers (FASTer section 4.2, Table 8).

VRR (Valid Reconstruction Rate, eq. 4) = N_valid / N_total with
N_valid = sum_i 1(||a_i^recon - a_i^gt||_1 < sigma). Two readings are reported:

    per element  a_i is one scalar action value (step t, dimension d), so sigma is a tolerance in
                 that dimension's physical unit (rad, m, gripper unit) -- the project's target
    per vector   a_i is the whole action vector of one step (the paper's L1 form, summed over D)

All functions take numpy arrays: ``recon`` and ``gt`` of shape (N, H, D).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def vrr_per_element(recon: np.ndarray, gt: np.ndarray, sigma: float) -> float:
    """Share of scalar action values with |recon - gt| < sigma."""
    err = np.abs(np.asarray(recon, np.float64) - np.asarray(gt, np.float64))
    return float((err < sigma).mean()) if err.size else float("nan")


def vrr_per_vector(recon: np.ndarray, gt: np.ndarray, sigma: float) -> float:
    """Share of action vectors (one per step, last axis D) with ||recon - gt||_1 < sigma."""
    err = np.abs(np.asarray(recon, np.float64) - np.asarray(gt, np.float64)).sum(-1)
    return float((err < sigma).mean()) if err.size else float("nan")


def error_stats(recon: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Mean / max absolute error overall and per dimension (physical units)."""
    err = np.abs(np.asarray(recon, np.float64) - np.asarray(gt, np.float64))
    flat = err.reshape(-1, err.shape[-1])
    return {
        "mean_abs_error": float(err.mean()),
        "max_abs_error": float(err.max()),
        "p99_abs_error": float(np.quantile(err, 0.99)),
        "mean_abs_error_per_dim": flat.mean(0).round(6).tolist(),
        "max_abs_error_per_dim": flat.max(0).round(6).tolist(),
    }


def vocabulary_stats(tokens: np.ndarray, vocab_size: int) -> dict[str, float]:
    """Usage (share of the vocabulary used at least once), normalised entropy H / log(V) and
    F_max (share of the most frequent token) of a flat array of token ids (Table 8)."""
    tokens = np.asarray(tokens).ravel()
    if tokens.size == 0:
        return {"usage": 0.0, "entropy_norm": 0.0, "f_max": 0.0, "active": 0}
    counts = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    return {
        "usage": float((counts > 0).mean()),
        "entropy_norm": entropy / float(np.log(vocab_size)) if vocab_size > 1 else 0.0,
        "f_max": float(p.max()),
        "active": int((counts > 0).sum()),
    }


def reconstruction_report(recon: np.ndarray, gt: np.ndarray,
                          sigmas: tuple[float, ...] = (1e-3, 1e-2)) -> dict[str, Any]:
    """VRR per element and per vector at each sigma plus error statistics."""
    out: dict[str, Any] = {"chunks": int(len(gt))}
    for s in sigmas:
        out[f"vrr_element@{s:g}"] = vrr_per_element(recon, gt, s)
        out[f"vrr_vector_l1@{s:g}"] = vrr_per_vector(recon, gt, s)
    out.update(error_stats(recon, gt))
    return out
