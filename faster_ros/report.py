"""Figures and summaries of a run (demo, closed-loop tests): what was commanded vs what the robot
reported, and how long inference took. Reads recorded data only; no rclpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faster_ros.embodiment import Embodiment


def chunk_latencies(rec) -> np.ndarray:
    """Policy time per published chunk (ms), from the ActionChunk timing breakdown."""
    return np.array([msg.t_total_ms for _, msg in rec.chunks], dtype=np.float64)


def recorded_series(emb: Embodiment, rec) -> tuple[np.ndarray, np.ndarray]:
    """Recorded joint states as (T,) stamps and (T, D) action-space positions (NaN if absent):
    the bag's own joint states when the mock robot replayed one, else the joint-state topics."""
    index = emb.position_joint_indices
    stamps, rows = [], []
    for _, stamp, joints in getattr(rec, "recorded", None) or rec.joints:
        row = np.full(emb.action_dim, np.nan)
        for name, value in joints.items():
            if name in index:
                row[index[name]] = value
        stamps.append(stamp)
        rows.append(row)
    if not rows:
        return np.zeros(0), np.zeros((0, emb.action_dim))
    order = np.argsort(stamps)
    return np.asarray(stamps)[order], np.asarray(rows)[order]


def commanded_series(rec) -> tuple[np.ndarray, np.ndarray]:
    """What the mock robot executed (the integrated commands) as (T,) stamps and (T, D)."""
    if not rec.simulated:
        return np.zeros(0), np.zeros((0, 0))
    stamps = np.array([s for s, _ in rec.simulated])
    values = np.stack([v for _, v in rec.simulated])
    return stamps, values


def summarise_commands(emb: Embodiment, rec) -> dict:
    out: dict = {"messages_per_group": {g.name: len(rec.commands.get(g.name, []))
                                        for g in emb.outputs}}
    t_rec, x_rec = recorded_series(emb, rec)
    t_cmd, x_cmd = commanded_series(rec)
    if len(t_rec) > 1 and len(t_cmd) > 1:
        errors = {}
        for g in emb.outputs:
            per_dim = []
            for i in g.indices:
                ok = np.isfinite(x_rec[:, i])
                if ok.sum() < 2:
                    continue
                interp = np.interp(t_cmd, t_rec[ok], x_rec[ok, i])
                inside = (t_cmd >= t_rec[ok][0]) & (t_cmd <= t_rec[ok][-1])
                if inside.any():
                    per_dim.append(np.abs(x_cmd[inside, i] - interp[inside]).mean())
            if per_dim:
                errors[g.name] = float(np.mean(per_dim))
        out["mean_abs_commanded_minus_recorded"] = errors
    return out


def plot_demo(emb: Embodiment, rec, path: str | Path, max_dims: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_rec, x_rec = recorded_series(emb, rec)
    t_cmd, x_cmd = commanded_series(rec)
    t0 = min([t[0] for t in (t_rec, t_cmd) if len(t)], default=0.0)
    dims = [g.indices[0] for g in emb.outputs][:max_dims]
    fig, axes = plt.subplots(len(dims) + 1, 1, figsize=(10, 2.2 * (len(dims) + 1)))
    for ax, i in zip(axes, dims):
        d = emb.dimensions[i]
        if len(t_rec):
            ax.plot(t_rec - t0, x_rec[:, i], label="recorded joint state", color="0.4")
        if len(t_cmd):
            ax.plot(t_cmd - t0, x_cmd[:, i], label="commanded (executed)", color="C1")
        ax.set_ylabel(f"{d.name}\n[{d.unit}]", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    axes[len(dims) - 1].set_xlabel("time [s]")
    lat = chunk_latencies(rec)
    ax = axes[-1]
    if len(lat):
        ax.hist(lat, bins=30, color="C0")
        ax.axvline(np.percentile(lat, 50), color="k", ls="--", label="p50")
        ax.axvline(np.percentile(lat, 95), color="r", ls="--", label="p95")
        ax.legend(fontsize=7)
    ax.set_xlabel("policy latency per chunk [ms]")
    ax.set_ylabel("chunks")
    fig.suptitle(f"{emb.name}: commanded vs recorded, {len(rec.chunks)} chunks")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
