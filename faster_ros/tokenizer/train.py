"""Train a FASTerVQ tokenizer: ``python -m faster_ros.tokenizer.train`` / ``main(argv)``.

    python -m faster_ros.tokenizer.train --embodiment g1_inspire \\
        --data /work/shared/data/actions/g1_inspire_26d_30hz.npz --out runs/g1 --steps 6000

Recipe (FASTer A.2): AdamW (betas 0.9 / 0.95, weight decay 0.1 on matrices), cosine schedule with
linear warm-up, gradient clipping at 1.0, loss = L1 + L1(DCT) + beta * commitment. The paper's lr
is 1e-4 for 300k steps at batch 512 on 8 GPUs; short CPU runs use a larger lr (VQConfig.lr,
1e-3 by default) over a few thousand steps.

Data: ``--data PATH[:RATIO][@MAP]`` (repeatable, see dataset.py), mixed by ratio as in FASTer
Table 3; the last ``heldout_fraction`` episodes of every source are held out and recorded in the
saved config; ``--val-fraction`` carves validation episodes from the training episodes for tuning.

One CPU process by default; under ``torchrun --nproc_per_node N`` it runs DDP (NCCL on GPUs,
gloo on CPU), every rank draws its own batches (seed + rank) and only rank 0 writes. Checkpoints
go to ``OUT/checkpoint`` every ``--checkpoint-every`` steps; ``--resume`` continues from it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from faster_ros.data import mix_weights
from faster_ros.distributed import Distributed
from faster_ros.tokenizer.configuration import VQConfig
from faster_ros.tokenizer.dataset import Source, SourceSplit, load_split, make_chunks
from faster_ros.tokenizer.metrics import vrr_per_element
from faster_ros.tokenizer.modeling import FASTerVQ

TRAINER_STATE = "trainer.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faster-ros tokenizer train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embodiment", help="embodiment name or YAML (shape, groups, dim names)")
    p.add_argument("--config", help="a VQConfig config.json instead of --embodiment")
    p.add_argument("--preset", default="small", help="VQConfig preset (debug, small, cpu, paper)")
    p.add_argument("--data", action="append", required=True, help="PATH[:RATIO][@MAP]")
    p.add_argument("--out", required=True, help="output directory (keep it outside git)")
    p.add_argument("--steps", type=int, help="total optimisation steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--stride", type=int, help="sliding-window stride over episodes")
    p.add_argument("--heldout-fraction", type=float)
    p.add_argument("--relative-to-state", action="store_true",
                   help="tokenise state-relative chunks a_{t+k} - s_t (openpi's DeltaActions; "
                        "the data must carry the robot state on the action layout); recorded "
                        "as provenance.relative_to_state, which policies check")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="share of TRAINING episodes kept for validation (hyper-parameter tuning)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any VQConfig field (JSON value), e.g. --set width=96")
    p.add_argument("--init-chunks", type=int, default=2048,
                   help="chunks of the k-means codebook initialisation batch")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--no-progress", action="store_true")
    return p


def make_config(args: argparse.Namespace) -> VQConfig:
    overrides: dict[str, Any] = {}
    for key, name in (("steps", "steps"), ("batch_size", "batch_size"), ("lr", "lr"),
                      ("seed", "seed"), ("stride", "stride"),
                      ("heldout_fraction", "heldout_fraction")):
        if getattr(args, key) is not None:
            overrides[name] = getattr(args, key)
    known = {f.name for f in fields(VQConfig)}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in known:
            raise SystemExit(f"--set: unknown VQConfig field {name!r}")
        try:
            overrides[name] = json.loads(value)
        except json.JSONDecodeError:
            overrides[name] = value
    if args.config:
        return VQConfig.load(args.config).replace(**overrides)
    if not args.embodiment:
        raise SystemExit("give --embodiment or --config")
    from faster_ros.embodiment import load_embodiment

    return VQConfig.from_embodiment(load_embodiment(args.embodiment), args.preset, **overrides)


def lr_at(step: int, cfg: VQConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: FASTerVQ, cfg: VQConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices / conv kernels only (not biases, norms, embeddings)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class ChunkSampler:
    """Draws training batches from the mixture: source k with probability ratio_k / sum."""

    def __init__(self, chunks: list[np.ndarray], sources: list[Source], seed: int):
        self.data = np.concatenate(chunks)
        weights = mix_weights([s.ratio for s in sources], [len(c) for c in chunks])
        self.cdf = np.cumsum(weights)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, size: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        draw = (rng or self.rng).random(size)
        idx = np.searchsorted(self.cdf, draw * self.cdf[-1], side="right")
        return torch.from_numpy(self.data[np.minimum(idx, len(self.data) - 1)])


def load_data(cfg: VQConfig, sources: list[Source], val_fraction: float,
              relative: bool = False):
    """Split every source by episode; returns splits, train chunks, validation chunks and the
    training frames the normaliser is fitted on (with ``relative``: the values of the
    state-relative training chunks, which is what the model sees)."""
    splits = [load_split(s, cfg.action_dim, cfg.heldout_fraction, relative) for s in sources]
    train_chunks, val_chunks, train_frames = [], [], []
    for sp in splits:
        n = _carve(sp, val_fraction)
        states = sp.train_state  # None unless relative
        train_eps = sp.train[:n]
        chunks = make_chunks(train_eps, cfg.chunk_size, cfg.stride,
                             anchors=None if states is None else states[:n])
        train_chunks.append(chunks)
        train_frames.extend([chunks.reshape(-1, cfg.action_dim)] if relative else train_eps)
        if n < len(sp.train):
            val_chunks.append(make_chunks(sp.train[n:], cfg.chunk_size,
                                          max(1, cfg.chunk_size // 4),
                                          anchors=None if states is None else states[n:]))
        if len(train_chunks[-1]) == 0:
            raise ValueError(f"{sp.source.path}: no training chunk of {cfg.chunk_size} steps")
    val = np.concatenate(val_chunks) if val_chunks else None
    return splits, train_chunks, val, np.concatenate(train_frames)


def _carve(sp: SourceSplit, val_fraction: float) -> int:
    """The last val_fraction of the training episodes become validation episodes; returns how
    many training episodes remain for training."""
    n = len(sp.train)
    k = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, round(val_fraction * n)))
    sp.val_names = sp.train_names[n - k:]
    return n - k


@torch.no_grad()
def validate(model: FASTerVQ, chunks: np.ndarray, max_chunks: int = 2048) -> dict[str, float]:
    """VRR per element at 1e-2 / 1e-3 and mean abs error on validation chunks (physical)."""
    x = torch.from_numpy(chunks[:max_chunks])
    recon = torch.cat([model.decode(model.encode(b)) for b in x.split(512)]).numpy()
    gt = x.numpy()
    model.train()
    return {"val_vrr@0.01": vrr_per_element(recon, gt, 1e-2),
            "val_vrr@0.001": vrr_per_element(recon, gt, 1e-3),
            "val_mae": float(np.abs(recon - gt).mean())}


def save_checkpoint(out: Path, model: FASTerVQ, opt: torch.optim.Optimizer, step: int,
                    sampler: ChunkSampler, wall: float) -> None:
    tmp = out / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    torch.save({"step": step, "optimizer": opt.state_dict(), "wall_s": wall,
                "rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state()},
               tmp / TRAINER_STATE)
    final = out / "checkpoint"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    ckpt = out / "checkpoint"
    cfg = make_config(args)
    if args.resume and ckpt.is_dir():
        steps = cfg.steps if args.steps else None
        cfg = VQConfig.load(ckpt / "config.json")
        cfg = cfg.replace(steps=steps) if steps else cfg
    env = Distributed()
    sources = [Source.parse(t) for t in args.data]
    relative = args.relative_to_state or bool(cfg.provenance.get("relative_to_state"))
    splits, train_chunks, val, frames = load_data(cfg, sources, args.val_fraction, relative)
    cfg = cfg.replace(provenance={
        "data": [sp.record() | {"val_episodes": sp.val_names} for sp in splits],
        "train_chunks": int(sum(len(c) for c in train_chunks)),
    } | ({"relative_to_state": True} if relative else {}))
    torch.manual_seed(cfg.seed + env.rank)
    model = FASTerVQ(cfg)
    limits = None
    if args.embodiment:
        from faster_ros.embodiment import load_embodiment

        emb = load_embodiment(args.embodiment)
        # a relative value spans at most the joint range either way
        limits = (emb.lower - emb.upper, emb.upper - emb.lower) if relative else (
            emb.lower, emb.upper)
    constant = model.fit_normalizer(frames, limits)
    if constant and env.main:
        print(f"dimensions constant in the training data, normalised by the embodiment limits: "
              f"{[cfg.dim_names[i] if cfg.dim_names else i for i in constant]}", flush=True)
    sampler = ChunkSampler(train_chunks, sources, cfg.seed + 1000 * env.rank)
    opt = make_optimizer(model, cfg)
    step, wall0 = 0, 0.0
    if args.resume and ckpt.is_dir():
        state = load_file(str(ckpt / "model.safetensors"))
        model.load_state_dict(state)
        trainer = torch.load(ckpt / TRAINER_STATE, weights_only=False)
        opt.load_state_dict(trainer["optimizer"])
        step, wall0 = int(trainer["step"]), float(trainer["wall_s"])
        sampler.rng.bit_generator.state = trainer["rng"]
        torch.set_rng_state(trainer["torch_rng"])
    model.to(env.device).train()
    if step == 0:
        # the same initialisation batch on every rank (PCA and k-means must agree)
        init = sampler.batch(args.init_chunks, np.random.default_rng(cfg.seed)).to(env.device)
        info = model.init_linear_skip(init)
        if info and env.main:
            print(f"linear skip from PCA: {info}", flush=True)
        model.init_codebooks(init)
    ddp = (torch.nn.parallel.DistributedDataParallel(model, forward_sync_buffers=False)
           if env.world > 1 else model)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"FASTerVQ {n_params / 1e6:.2f}M params, {cfg.tokens_per_chunk} tokens/chunk "
              f"({cfg.values_per_token:.2f} values/token), {len(sampler)} training chunks, "
              f"{0 if val is None else len(val)} validation chunks, world {env.world}", flush=True)
    if env.main and val is not None and step == 0:
        print("step 0: " + ", ".join(f"{k} {v:.4g}" for k, v in validate(model, val).items()),
              flush=True)
    log = (out / "log.jsonl").open("a") if env.main else None
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, disable=not env.main or args.no_progress,
               dynamic_ncols=True)
    metrics: dict[str, float] = {}
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = sampler.batch(cfg.batch_size).to(env.device)
        result = ddp(batch)
        opt.zero_grad(set_to_none=True)
        result.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        metrics = {"step": step, "loss": result.loss.item(), "l1": float(result.l1),
                   "dct_l1": float(result.dct_l1), "commit": float(result.commitment),
                   "grad_norm": float(grad_norm), "lr": opt.param_groups[0]["lr"]}
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", l1=f"{metrics['l1']:.4f}")
        if env.main and val is not None and (step % args.eval_every == 0 or step == cfg.steps):
            metrics.update(validate(model, val))
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                                                   if k.startswith("val")))
        if env.main and (step % 50 == 0 or step == cfg.steps):
            usage = result.codes.unique().numel() / cfg.codebook_size
            metrics["batch_code_usage"] = usage
            log.write(json.dumps(metrics | {"wall_s": wall0 + time.perf_counter() - t0}) + "\n")
            log.flush()
        if env.main and (step % args.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(out, model, opt, step, sampler, wall0 + time.perf_counter() - t0)
    bar.close()
    wall = wall0 + time.perf_counter() - t0
    if env.main:
        model.save(out / "model")
        summary = {"steps": step, "wall_s": round(wall, 1), "world_size": env.world,
                   "params": sum(p.numel() for p in model.parameters()),
                   "machine": f"{platform.machine()} {platform.processor() or ''} "
                              f"{os.cpu_count()} cpus, torch {torch.__version__}, "
                              f"{torch.get_num_threads()} threads, device {env.device}",
                   "final": metrics, "data": [s.spec_string() for s in sources],
                   "argv": argv if argv is not None else None}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        shutil.copy(out / "train_summary.json", out / "model" / "train_summary.json")
        print(f"saved {out / 'model'} after {step} steps in {wall / 60:.1f} min")
    if log:
        log.close()
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
