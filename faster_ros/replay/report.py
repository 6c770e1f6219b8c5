"""Replay report files: ``report.json``, ``report.png`` (plots) and ``report.html`` (the tables
and the plots on one page). No rclpy."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from faster_ros.embodiment import Embodiment
from faster_ros.replay.bag import ReplayInputs
from faster_ros.replay.offline import ReplayRun


def _plot(path: Path, emb: Embodiment, inputs: ReplayInputs, run: ReplayRun,
          figures: dict[str, Any], max_dims: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = inputs.commands if inputs.commands is not None else inputs.states
    published = [c for c in run.chunks if c.published]
    # pose outputs are plotted as errors in m / rad below (their components mean little alone)
    dims = [g.indices[0] for g in emb.outputs if g.end_effector is None][:max_dims]
    ee = figures.get("end_effector") or {}
    ee_panels = [(key, label) for key, label in
                 (("actions_per_step", "action (per step)"),
                  ("pose_per_step", "commanded pose (deltas accumulated)")) if ee.get(key)]
    rows = len(dims) + 2 + len(ee_panels)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.1 * rows))
    t0 = inputs.start
    dt = emb.control.dt
    for ax, d in zip(axes, dims):
        ax.plot(series.times - t0, series.values[:, d], color="0.35", lw=1.2,
                label=f"recorded ({series.source})")
        for k, c in enumerate(published):
            steps = c.stamp - t0 + dt * np.arange(len(c.actions))
            ax.plot(steps, c.actions[:, d], color="C1", lw=0.8, alpha=0.8,
                    label="predicted chunks" if k == 0 else None)
        dim = emb.dimensions[d]
        ax.set_ylabel(f"{dim.name}\n[{dim.unit}]", fontsize=8)
        ax.legend(loc="upper right", fontsize=7)
    if dims:
        axes[len(dims) - 1].set_xlabel("bag time [s]")
    for k, (key, label) in enumerate(ee_panels):
        from faster_ros.replay.end_effector import plot_per_step

        ax = axes[len(dims) + k]
        plot_per_step(ax, ee[key])
        ax.set_title(f"end-effector error by step, {label}, vs {ee.get('compared_with', '')}",
                     fontsize=8)
    ax = axes[-2]
    for name, fig_key in (("policy", "error"), ("hold state", "hold_state"),
                          ("hold last command", "hold_last_command")):
        per_step = figures.get(fig_key, {}).get("per_step_mae")
        if per_step:
            ax.plot(np.arange(len(per_step)), [np.nan if v is None else v for v in per_step],
                    marker=".", label=name)
    ax.set_xlabel("step of the chunk")
    ax.set_ylabel("mean abs error", fontsize=8)
    ax.legend(fontsize=7)
    ax = axes[-1]
    lat = np.array([c.timing.get("total_ms", np.nan) for c in run.chunks if c.timing])
    lat = lat[np.isfinite(lat)]
    if lat.size:
        ax.hist(lat, bins=20, color="C0")
        ax.axvline(np.percentile(lat, 50), color="k", ls="--", label="p50")
        ax.axvline(np.percentile(lat, 95), color="r", ls="--", label="p95")
        ax.legend(fontsize=7)
    ax.set_xlabel("policy latency per chunk [ms]")
    ax.set_ylabel("chunks")
    fig.suptitle(f"{emb.name} replay of {inputs.path.name}: {len(published)} chunks",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _html(report: dict[str, Any], png: Path | None) -> str:
    fig = report.get("figures", {})
    parts = [f"<h1>faster-ros replay: {html.escape(report['bag'])}</h1>",
             f"<p>embodiment {html.escape(report['embodiment'])}, model "
             f"{html.escape(str(report.get('model')))}, decoding "
             f"{html.escape(str(report.get('decoding')))}, compared with "
             f"{html.escape(str(fig.get('compared_with', '')))}</p>"]
    for note in report.get("notes", []):
        parts.append(f"<p><b>note:</b> {html.escape(note)}</p>")
    err, hold = fig.get("error", {}), fig.get("hold_state", {})
    keys = ["mae", "max", "vrr@0.001", "vrr@0.01"]
    rows = [("policy", *[_fmt(err.get(k)) for k in keys])]
    if hold:
        rows.append(("hold state", *[_fmt(hold.get(k)) for k in keys]))
    last = fig.get("hold_last_command", {})
    if last:
        rows.append(("hold last command", *[_fmt(last.get(k)) for k in keys]))
    for g, v in err.get("per_group", {}).items():
        rows.append((f"policy: {g}", *[_fmt(v.get(k)) for k in keys]))
    parts.append("<h2>Error against the recording</h2>" + _table(rows, ("", *keys)))
    ee = fig.get("end_effector") or {}
    if ee:
        from faster_ros.replay.end_effector import TABLE_HEADER, table_rows

        ee_rows = table_rows(ee, "policy actions", "actions") + table_rows(
            ee, "hold pose (baseline)", "hold_pose") + table_rows(
            ee, "policy pose along the chunk", "pose")
        parts.append("<h2>End effectors (m, rad)</h2>"
                     f"<p>compared with {html.escape(ee.get('compared_with', ''))}; "
                     "translation: Euclidean distance (m), rotation: geodesic angle (rad), "
                     "VRR: share of steps within 1e-3 / 1e-2 in those units. The per-element "
                     "figures above mean little for rotation components.</p>"
                     + _table(ee_rows, TABLE_HEADER))
    parts.append("<h2>Per joint (mean abs error)</h2>" + _table(
        [(n, _fmt(v)) for n, v in err.get("per_joint_mae", {}).items()], ("joint", "mae")))
    seam = fig.get("seam", {})
    parts.append("<h2>Seams</h2>" + _table(
        [(g, _fmt(v["mean"]), _fmt(v["max"]), _fmt(v["bound"]))
         for g, v in seam.get("per_group", {}).items()], ("group", "mean", "max", "bound"))
        + f"<p>{seam.get('seams', 0)} seams, {seam.get('over_bound', 0)} over the bound</p>")
    lat = fig.get("latency", {})
    parts.append("<h2>Latency and tokens</h2>" + _table(
        [(k, _fmt(lat.get(k))) for k in ("chunks", "p50_ms", "p95_ms", "max_ms", "mean_ms")]
        + [(f"stage {k}", _fmt(v)) for k, v in lat.get("stages_mean_ms", {}).items()]
        + [("invalid tokens", fig.get("invalid_tokens", {}).get("total")),
           ("chunks rejected", json.dumps(fig.get("rejected", {}))),
           ("assembly failures", json.dumps(fig.get("assembly_failures", {})))],
        ("figure", "value")))
    if png is not None and png.exists():
        data = base64.b64encode(png.read_bytes()).decode()
        parts.append(f'<h2>Plots</h2><img src="data:image/png;base64,{data}"/>')
    style = ("<style>body{font-family:sans-serif;max-width:1000px}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:2px 8px}</style>")
    return f"<!doctype html><html><head><meta charset='utf-8'>{style}</head><body>" \
           + "".join(parts) + "</body></html>\n"


def write_report(out_dir: str | Path, report: dict[str, Any], *, emb: Embodiment | None = None,
                 inputs: ReplayInputs | None = None, run: ReplayRun | None = None,
                 html_page: bool = True) -> list[Path]:
    """Write report.json (+ report.png and report.html when the run is given)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_text(json.dumps(report, indent=1, default=_json_default) + "\n")
    png = None
    if emb is not None and inputs is not None and run is not None:
        png = out / "report.png"
        _plot(png, emb, inputs, run, report.get("figures", {}))
        written.append(png)
    if html_page:
        page = out / "report.html"
        page.write_text(_html(report, png))
        written.append(page)
    return written


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
