"""Ground truth vs reconstruction plots of action chunks, like FASTer's Fig. 14.

Red: ground truth with the shaded +-sigma tolerance band (0.01); green: FASTerVQ; blue dashed:
FAST. One row per sample chunk, one column per plotted dimension, physical units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_reconstructions(path: str | Path, gt: np.ndarray, recons: dict[str, np.ndarray],
                         dims: list[int], dim_names: list[str], sigma: float = 0.01,
                         title: str = "") -> None:
    """gt (S, H, D) and recons name -> (S, H, D); writes a PNG with S x len(dims) panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = [dict(color="tab:green", lw=1.6), dict(color="tab:blue", lw=1.2, ls="--"),
              dict(color="tab:purple", lw=1.0, ls=":")]
    rows, cols = len(gt), len(dims)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    t = np.arange(gt.shape[1])
    for r in range(rows):
        for c, d in enumerate(dims):
            ax = axes[r][c]
            ax.fill_between(t, gt[r, :, d] - sigma, gt[r, :, d] + sigma, color="tab:red",
                            alpha=0.2, lw=0)
            ax.plot(t, gt[r, :, d], color="tab:red", lw=1.2, label="ground truth")
            for (name, rec), style in zip(recons.items(), styles):
                ax.plot(t, rec[r, :, d], label=name, **style)
            if r == 0:
                ax.set_title(dim_names[d], fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6, loc="best")
    fig.suptitle(title or f"ground truth (red, +-{sigma:g} band) vs reconstruction", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_dims(errors: np.ndarray, count: int) -> list[int]:
    """Dimensions to plot: the ones with the largest mean error first (per-dim (D,) errors)."""
    order = np.argsort(-np.asarray(errors))
    return sorted(order[:count].tolist())
