"""``faster-ros replay BAG --tokenizer-only``: the action tokenizer alone on a bag's recorded
actions, side by side with the FAST baseline. No rclpy.

Chunks are cut from the recorded commands (or the future joint states) resampled at the control
rate, ``chunk_size`` steps every ``chunk_size // 4`` steps; chunks with a dimension the recording
lacks are left out. A state-relative tokenizer (``provenance.relative_to_state``, as bundled with
the shipped policy) gets each chunk minus the joint state at its first step, exactly as the policy
decodes. The tokenizer is the ``--tokenizer`` given, else the embodiment's ``policy.tokenizer``,
else the one bundled with the model. Figures come from the tokenizer's own evaluation
(:func:`faster_ros.tokenizer.evaluate.evaluate_vq` / ``evaluate_fast``): VRR at 1e-3 / 1e-2,
errors, tokens per chunk, vocabulary use. FAST has no model of its own here, so it is fitted on
the evaluated chunks themselves (in-sample: an optimistic baseline, said so in the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from faster_ros.replay.bag import ReplayInputs
from faster_ros.replay.report import _table

FAST_VOCABS = (256, 1024)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def load_tokenizer(args, emb):
    """(FASTerVQ, description) for --tokenizer / policy.tokenizer / the model's bundled one."""
    from faster_ros.paths import model_path
    from faster_ros.tokenizer import FASTerVQ

    name = args.tokenizer or emb.policy.tokenizer
    if name:
        return FASTerVQ.load(name, embodiment=emb), str(name)
    model = args.model or emb.policy.model
    if not model:
        raise ValueError(f"no tokenizer: pass --tokenizer (embodiment {emb.name} names none)")
    from faster_ros.policy.modeling import POLICY_FILE, load_action_tokenizer

    root = model_path(model)
    ref = json.loads((root / POLICY_FILE).read_text()).get("action_tokenizer", "")
    if not ref:
        raise ValueError(f"model {model} bundles no tokenizer: pass --tokenizer")
    tok = load_action_tokenizer(ref, root)
    if not isinstance(tok, FASTerVQ):  # a baseline policy's binning / FAST codec
        raise ValueError(f"model {model} bundles a {tok.config.kind!r} codec, not a FASTerVQ: "
                         f"pass --tokenizer")
    return tok, f"{model} (bundled {ref})"


def bag_chunks(inputs: ReplayInputs, chunk_size: int, stride: int, relative: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, D) float32 chunks of the recorded actions and (N,) start times."""
    emb = inputs.embodiment
    dt = emb.control.dt
    series, shift = (inputs.commands, 0.0) if inputs.commands is not None else (inputs.states,
                                                                                dt)
    grid = np.arange(series.times[0], series.times[-1] + 1e-9, dt)
    values = series.at(grid + shift)  # (T, D)
    offsets = inputs.states.at(grid) if relative else np.zeros_like(values)
    if emb.end_effectors and inputs.poses is not None:
        # end-effector dims: the recorded poses as the policy's actions (deltas from the pose
        # one period before); the state has no pose, so they are never state-relative
        from faster_ros.control.pose import CommandSpace
        from faster_ros.replay.end_effector import pose_dims, recorded_actions

        cols = pose_dims(emb)
        actions, _ = recorded_actions(inputs, CommandSpace(emb), float(grid[0]),
                                      len(grid))
        values[:, cols] = actions[:, cols]
        offsets[:, cols] = 0.0
    chunks, starts = [], []
    for k in range(0, len(grid) - chunk_size + 1, stride):
        c = values[k:k + chunk_size] - offsets[k][None, :]
        if np.isfinite(c).all():
            chunks.append(c)
            starts.append(grid[k])
    if not chunks:
        raise ValueError(f"{inputs.path}: no complete chunk of {chunk_size} steps with every "
                         f"dimension recorded ({series.source}, {len(grid)} steps)")
    return np.stack(chunks).astype(np.float32), np.asarray(starts)


def run_tokenizer_check(inputs: ReplayInputs, args, out: Path) -> int:
    import torch

    from faster_ros.tokenizer.evaluate import evaluate_fast, evaluate_vq, summary_table
    from faster_ros.tokenizer.plots import pick_dims, plot_reconstructions

    emb = inputs.embodiment
    if args.threads:
        torch.set_num_threads(args.threads)
    tok, name = load_tokenizer(args, emb)
    cfg = tok.config
    relative = _truthy((getattr(cfg, "provenance", None) or {}).get("relative_to_state"))
    stride = max(1, cfg.chunk_size // 4)
    chunks, starts = bag_chunks(inputs, cfg.chunk_size, stride, relative)
    vq, recon = evaluate_vq(tok, chunks)
    fast, fast_recon = {}, {}
    for vocab in FAST_VOCABS:
        key = f"FAST v{vocab} s10 (fitted on these chunks)"
        try:
            fast[key], fast_recon[key] = evaluate_fast(chunks, chunks, vocab, 10.0)
        except ValueError as exc:  # e.g. an alphabet larger than the vocabulary
            fast[key + " not fitted"] = {"error": str(exc)}
    ok = {k: v for k, v in fast.items() if "error" not in v}
    table = summary_table({"fastervq": vq, "fast": ok})
    end_effector = _end_effector_figures(inputs, chunks, {"FASTerVQ": recon, **fast_recon})
    series = inputs.commands if inputs.commands is not None else inputs.states
    report = {"bag": str(inputs.path), "embodiment": emb.name, "tokenizer": name,
              "actions": series.source, "state_relative": relative, "chunks": len(chunks),
              "stride": stride, "chunk_starts_s": (starts - inputs.start).round(4).tolist(),
              "notes": inputs.notes + ["FAST is fitted on the evaluated chunks (in-sample)"],
              "fastervq": vq, "fast": fast, "table": table}
    if end_effector:
        report["end_effector"] = end_effector
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer_report.json").write_text(json.dumps(report, indent=1) + "\n")
    pick = np.linspace(0, len(chunks) - 1, min(3, len(chunks))).round().astype(int)
    dims = pick_dims(vq["mean_abs_error_per_dim"], 6)
    recons = {"FASTerVQ": recon[pick]}
    first = next(iter(fast_recon), None)
    if first:
        recons[first] = fast_recon[first][pick]
    plot_reconstructions(out / "tokenizer_recon.png", chunks[pick], recons, dims,
                         list(emb.dim_names), title=f"{name} on {inputs.path.name}")
    rows = [tuple(c.strip() for c in line.strip("|").split("|"))
            for line in table.splitlines()[2:]]
    header = tuple(c.strip() for c in table.splitlines()[0].strip("|").split("|"))
    ee_html, files = "", [out / "tokenizer_report.json", out / "tokenizer_recon.png"]
    if end_effector:
        from faster_ros.replay.end_effector import TABLE_HEADER, table_rows

        _plot_end_effector(out / "tokenizer_end_effector.png", end_effector,
                           f"{name} on {inputs.path.name}")
        files.append(out / "tokenizer_end_effector.png")
        ee_rows = [r for key in end_effector["reconstructions"]
                   for r in table_rows({"units": end_effector["units"],
                                        **end_effector["reconstructions"]}, key, key)]
        ee_html = ("<h2>End effectors (m, rad)</h2><p>poses from "
                   f"{end_effector['compared_with']}; translation: Euclidean distance (m), "
                   "rotation: geodesic angle (rad), VRR: share of steps within 1e-3 / 1e-2 "
                   "in those units (the table above is per element)</p>"
                   + _table(ee_rows, TABLE_HEADER)
                   + '<p><img src="tokenizer_end_effector.png"/></p>')
    (out / "tokenizer_report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'></head><body>"
        f"<h1>Tokenizer check: {name} on {inputs.path.name}</h1><p>{len(chunks)} chunks of "
        f"{series.source}{', state-relative' if relative else ''}; FAST fitted in-sample</p>"
        + _table(rows, header) + '<p><img src="tokenizer_recon.png"/></p>' + ee_html
        + "</body></html>\n")
    files.append(out / "tokenizer_report.html")
    print(table)
    if end_effector:
        from faster_ros.replay.end_effector import summary_line

        for key in end_effector["reconstructions"]:
            print(f"end effectors, {key}: "
                  + summary_line(end_effector["reconstructions"], key))
    print("report: " + ", ".join(str(f) for f in files))
    return 0


def _end_effector_figures(inputs: ReplayInputs, chunks: np.ndarray,
                          recons: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per reconstruction, the end-effector errors in m / rad (+ gripper) of the chunks and
    their mean per chunk step; {} without end effectors or recorded poses."""
    emb = inputs.embodiment
    if not emb.end_effectors or inputs.poses is None:
        return {}
    from faster_ros.control.pose_metrics import reconstruction_figures

    return {"compared_with": inputs.poses.source,
            **reconstruction_figures(emb, chunks, recons)}


def _plot_end_effector(path: Path, figures: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from faster_ros.replay.end_effector import plot_per_step

    keys = list(figures["per_step"])
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.6 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        plot_per_step(ax, figures["per_step"][key])
        ax.set_title(f"{key}: end-effector reconstruction error by step", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
