"""Evaluate a FASTerVQ tokenizer next to the FAST baseline: ``main(argv)`` /
``python -m faster_ros.tokenizer.evaluate``.

    python -m faster_ros.tokenizer.evaluate --model models/g1_inspire_vq \\
        --data /work/shared/data/actions/g1_inspire_26d_30hz.npz --split heldout --out out/eval

``--split heldout`` takes, for a source the model was trained on, exactly the episodes its
config records as held out (never trained on); a source the model never saw is used whole.
FAST (DCT + scale + BPE, vocabularies 1024 and 2048 by default) is fitted on the model's own
training episodes. A model trained with ``--relative-to-state`` is evaluated on state-relative
chunks (a_{t+k} - s_t), and FAST is fitted and scored on the same relative chunks. Writes
``report.json`` and ``recon.png`` (ground truth vs reconstructions with
the 0.01 band, like FASTer Fig. 14) and prints the side-by-side table.

Reported per tokenizer: VRR at sigma 1e-3 / 1e-2 per element (physical units of each dimension)
and per action vector (the paper's L1 form), mean / p99 / max absolute error, tokens per chunk,
action values per token, vocabulary usage, normalised entropy, F_max; FASTerVQ also per
number of decoded levels and clipping; FAST its decode failures (failed chunks count as zeros).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faster_ros.tokenizer.dataset import Source, find_record, make_chunks, select_episodes
from faster_ros.tokenizer.fast_baseline import FASTTokenizer
from faster_ros.tokenizer.metrics import reconstruction_report, vocabulary_stats
from faster_ros.tokenizer.modeling import FASTerVQ
from faster_ros.tokenizer.plots import pick_dims, plot_reconstructions

SIGMAS = (1e-3, 1e-2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faster-ros tokenizer eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model directory or shipped model name")
    p.add_argument("--data", action="append", required=True, help="PATH[@MAP] (repeatable)")
    p.add_argument("--split", default="heldout", choices=("heldout", "val", "train", "all"))
    p.add_argument("--out", required=True, help="output directory for report.json/recon.png")
    p.add_argument("--stride", type=int, help="window stride (default chunk_size // 4)")
    p.add_argument("--fast-vocab", type=int, nargs="*", default=[1024, 2048])
    p.add_argument("--fast-scale", type=float, nargs="*", default=[10.0],
                   help="FAST scales (10 is FAST's default; more give a VRR / tokens curve)")
    p.add_argument("--fast-stride", type=int, default=1, help="stride of FAST training chunks")
    p.add_argument("--samples", type=int, default=4, help="chunks drawn in recon.png")
    p.add_argument("--plot-dims", type=int, default=6)
    p.add_argument("--threads", type=int, default=0)
    return p


def is_relative(model: FASTerVQ) -> bool:
    """Whether the model tokenises state-relative chunks (a_{t+k} - s_t)."""
    return bool(model.config.provenance.get("relative_to_state"))


def load_episodes(model: FASTerVQ, source: Source, names: list[str] | None
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """The mapped episodes of ``source`` named ``names`` (None: all) and, for a relative model,
    their mapped states (the chunks' anchors; else None)."""
    if is_relative(model):
        return select_episodes(source, names, relative=True)
    return select_episodes(source, names), None


def chunks_of(model: FASTerVQ, source: Source, names: list[str] | None, stride: int,
              align_end: bool = False) -> np.ndarray:
    """The chunks the model tokenises from these episodes of ``source``: absolute windows, or
    state-relative ones for a relative model (for FAST too, so both see the same values)."""
    episodes, states = load_episodes(model, source, names)
    return make_chunks(episodes, model.config.chunk_size, stride, align_end, anchors=states)


def episodes_for(model: FASTerVQ, source: Source, split: str
                 ) -> tuple[list[str] | None, str, Source]:
    """Names of the episodes of ``source`` for ``split`` (None: all) and a note saying where the
    split came from."""
    rec = find_record(model.config.provenance, source.path)
    if rec is None:
        return None, "source not in training data: all episodes", source
    if source.dim_map is None and "@" in rec["spec"]:
        source = Source(source.path, source.ratio, Source.parse(rec["spec"]).dim_map)
    val = rec.get("val_episodes", [])
    names = {"heldout": rec["heldout_episodes"], "val": val,
             "train": [n for n in rec["train_episodes"] if n not in set(val)],
             "all": None}[split]
    if names is not None and not names:
        raise SystemExit(f"{source.path}: the model records no {split} episodes")
    return names, f"{split} episodes recorded in the model config", source


def training_chunks(model: FASTerVQ, stride: int) -> np.ndarray:
    """The model's training chunks (its recorded training episodes, mapped), for FAST."""
    parts = []
    for rec in model.config.provenance.get("data", []):
        source = Source.parse(rec["spec"])
        val = set(rec.get("val_episodes", []))
        names = [n for n in rec["train_episodes"] if n not in val]
        parts.append(chunks_of(model, source, names, stride))
    if not parts:
        raise SystemExit("the model config records no training data: cannot fit FAST")
    return np.concatenate(parts)


@torch.no_grad()
def evaluate_vq(model: FASTerVQ, chunks: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    cfg = model.config
    x = torch.from_numpy(chunks)
    codes, clipped = [], 0
    for batch in x.split(1024):
        res = model.encode_with_info(batch)
        codes.append(res.codes)
        clipped += res.clipped
    codes_t = torch.cat(codes)
    recon = torch.cat([model.decode(c) for c in codes_t.split(1024)]).numpy()
    report = reconstruction_report(recon, chunks, SIGMAS)
    tokens = model.codes_to_tokens(codes_t).numpy()
    report.update({
        "tokens_per_chunk": cfg.tokens_per_chunk,
        "values_per_token": cfg.values_per_token,
        "vocab_size": cfg.codebook_size,
        "clipped_values": int(clipped),
        "clipped_fraction": clipped / chunks.size,
        "vocabulary": vocabulary_stats(tokens, cfg.codebook_size),
        "vocabulary_per_level": [vocabulary_stats(codes_t[:, q].numpy(), cfg.codebook_size)
                                 for q in range(cfg.codebooks)],
        "levels": {},
    })
    for k in range(1, cfg.codebooks):
        partial = torch.cat([model.decode(c, levels=k) for c in codes_t.split(1024)]).numpy()
        rep = reconstruction_report(partial, chunks, SIGMAS)
        report["levels"][str(k)] = {key: rep[key] for key in rep if key.startswith("vrr")
                                    or key == "mean_abs_error"}
    return report, recon


def evaluate_fast(train: np.ndarray, chunks: np.ndarray, vocab: int, scale: float
                  ) -> tuple[dict[str, Any], np.ndarray]:
    t0 = time.perf_counter()
    fast = FASTTokenizer(chunks.shape[1], chunks.shape[2], vocab, scale).fit(train)
    fit_s = time.perf_counter() - t0
    tokens = fast.encode(chunks)
    decoded = fast.decode(tokens)
    lengths = np.array([len(t) for t in tokens])
    report = reconstruction_report(decoded.actions, chunks, SIGMAS)
    ok = ~decoded.failed
    report.update({
        "tokens_per_chunk": float(lengths.mean()),
        "tokens_per_chunk_median": float(np.median(lengths)),
        "tokens_per_chunk_max": int(lengths.max()),
        "values_per_token": float(chunks.shape[1] * chunks.shape[2] / lengths.mean()),
        "vocab_size": vocab,
        "scale": scale,
        "decode_failures": decoded.failures,
        "decode_failure_rate": decoded.failures / len(chunks),
        "vrr_element@0.01_decoded_only": (float((np.abs(decoded.actions[ok] - chunks[ok])
                                                 < 1e-2).mean()) if ok.any() else float("nan")),
        "vocabulary": vocabulary_stats(np.concatenate(tokens), vocab),
        "fit_s": round(fit_s, 1),
    })
    return report, decoded.actions


def summary_table(report: dict[str, Any]) -> str:
    cols = [("FASTerVQ", report["fastervq"])] + list(report["fast"].items())
    keys = [("VRR elem @1e-3", "vrr_element@0.001"), ("VRR elem @1e-2", "vrr_element@0.01"),
            ("VRR vec L1 @1e-3", "vrr_vector_l1@0.001"), ("VRR vec L1 @1e-2",
                                                          "vrr_vector_l1@0.01"),
            ("mean abs err", "mean_abs_error"), ("max abs err", "max_abs_error"),
            ("tokens/chunk", "tokens_per_chunk"), ("values/token", "values_per_token")]
    lines = ["| metric | " + " | ".join(name for name, _ in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, key in keys:
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.4g}" for _, r in cols) + " |")
    for label, key in (("usage", "usage"), ("entropy (norm.)", "entropy_norm"),
                       ("F_max", "f_max")):
        lines.append(f"| {label} | " + " | ".join(f"{r['vocabulary'][key]:.4g}"
                                                  for _, r in cols) + " |")
    lines.append("| decode failures | " + " | ".join(
        str(r.get("decode_failures", 0)) for _, r in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = FASTerVQ.load(args.model)
    cfg = model.config
    stride = args.stride or max(1, cfg.chunk_size // 4)
    chunks, notes = [], {}
    for text in args.data:
        names, note, source = episodes_for(model, Source.parse(text), args.split)
        episodes, states = load_episodes(model, source, names)
        part = make_chunks(episodes, cfg.chunk_size, stride, align_end=True, anchors=states)
        notes[str(source.path)] = {"note": note, "episodes": len(episodes), "chunks": len(part)}
        chunks.append(part)
    gt = np.concatenate(chunks)
    if len(gt) == 0:
        raise SystemExit("no evaluation chunk (episodes shorter than the chunk?)")
    report: dict[str, Any] = {"model": str(args.model), "split": args.split,
                              "data": notes, "stride": stride, "chunks": len(gt),
                              "relative_to_state": is_relative(model),
                              "chunk_shape": list(gt.shape[1:])}
    report["fastervq"], recon_vq = evaluate_vq(model, gt)
    train = training_chunks(model, args.fast_stride) if args.fast_vocab else None
    report["fast"], recon_fast = {}, {}
    for vocab in args.fast_vocab:
        for scale in args.fast_scale:
            name = f"FAST v{vocab} s{scale:g}"
            try:
                report["fast"][name], recon_fast[name] = evaluate_fast(train, gt, vocab, scale)
            except ValueError as exc:  # alphabet larger than the vocabulary
                report["fast"][name + " (not fitted)"] = {"error": str(exc)}
    report["fast"] = {k: v for k, v in report["fast"].items() if "error" not in v} | {
        k: v for k, v in report["fast"].items() if "error" in v}
    from faster_ros.control.pose_metrics import reconstruction_figures_for

    # end effectors: translation (m), geodesic rotation (rad), VRR in those units (issue 9)
    end_effector = reconstruction_figures_for(cfg.embodiment, gt,
                                              {"FASTerVQ": recon_vq, **recon_fast})
    if end_effector:
        report["end_effector"] = end_effector
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(gt), size=min(args.samples, len(gt)), replace=False))
    names = list(cfg.dim_names) or [f"dim {i}" for i in range(cfg.action_dim)]
    dims = pick_dims(report["fastervq"]["mean_abs_error_per_dim"], args.plot_dims)
    # the most accurate FAST variant is drawn: the fair comparison, not the coarsest one
    best_fast = max(recon_fast, key=lambda k: report["fast"][k]["vrr_element@0.01"],
                    default=None)
    recons = {"FASTerVQ": recon_vq[pick]}
    if best_fast:
        recons[best_fast] = recon_fast[best_fast][pick]
    plot_reconstructions(out / "recon.png", gt[pick], recons, dims, names,
                         title=f"{args.model} ({args.split}): ground truth (red, 0.01 band)")
    ok = {k: v for k, v in report["fast"].items() if "error" not in v}
    table = summary_table({"fastervq": report["fastervq"], "fast": ok})
    if is_relative(model):
        table = ("state-relative chunks (a_{t+k} - s_t) for every tokenizer; errors in the "
                 "actions' own units\n" + table)
    report["table"] = table
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table)
    for name, per_ee in report.get("end_effector", {}).get("reconstructions", {}).items():
        for ee, v in per_ee.items():
            print(f"{name} {ee}: translation {v['translation'].get('mean_m', float('nan')):.4g}"
                  f" m (VRR@1e-2 {v['translation'].get('vrr@0.01', float('nan')):.3f}), "
                  f"rotation {v['rotation'].get('mean_rad', float('nan')):.4g} rad (VRR@1e-2 "
                  f"{v['rotation'].get('vrr@0.01', float('nan')):.3f})")
    print(f"wrote {out / 'report.json'} and {out / 'recon.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
