"""FASTerVQ encode / decode latency (batch 1) and throughput (batch 256) on CPU.

    python bench/bench_tokenizer.py                      # shipped models + the two paper shapes
    python bench/bench_tokenizer.py --models g1_inspire_vq --threads 1

Shapes: single arm (chunk 20 x 7 DoF, Table 4 "Libero / Xarm": C_h 1, C_a 7, 3 codebooks) and
whole body (32 x 21, "R1Lite suite": C_h 2, C_a 21, 3 codebooks), built with the "cpu" preset
(the shipped models' recipe; untrained weights time the same as trained ones), plus every shipped
model found under models/.
Latency is the median of repeated single-chunk calls, in eval mode under torch.inference_mode;
the paper reports 7 ms detokenisation of one whole-body chunk on an RTX 5090.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from faster_ros.tokenizer import FASTerVQ, VQConfig

SHAPES = {
    "single_arm_20x7": dict(action_dim=7, chunk_size=20, patch_groups=((0, 1, 2, 3, 4, 5), (6,)),
                            time_patch=4, code_horizon=1, code_dims=7),
    "whole_body_32x21": dict(action_dim=21, chunk_size=32, time_patch=4, code_horizon=2,
                             code_dims=21,
                             patch_groups=(tuple(range(6)), (6,), tuple(range(7, 13)), (13,),
                                           tuple(range(14, 18)), (18, 19, 20))),
}


def timed(fn: Callable[[], object], repeat: int, warmup: int = 5
          ) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of ``repeat`` calls. On a shared, overloaded
    CPU the wall time includes waiting for a core; the CPU time is the work itself."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return wall, cpu


def bench(name: str, model: FASTerVQ, repeat: int, batch: int) -> dict[str, float]:
    cfg = model.config
    model.eval()
    x1 = torch.randn(1, cfg.chunk_size, cfg.action_dim) * model.normalizer.half_range \
        + model.normalizer.center
    xb = x1.repeat(batch, 1, 1) + 0.01 * torch.randn(batch, cfg.chunk_size, cfg.action_dim)
    with torch.inference_mode():
        c1, cb = model.encode(x1), model.encode(xb)
        enc1, enc1_cpu = timed(lambda: model.encode(x1), repeat)
        dec1, dec1_cpu = timed(lambda: model.decode(c1), repeat)
        encb, _ = timed(lambda: model.encode(xb), max(3, repeat // 20), warmup=1)
        decb, _ = timed(lambda: model.decode(cb), max(3, repeat // 20), warmup=1)
    row = {
        "encode_ms_b1": 1e3 * statistics.median(enc1),
        "decode_ms_b1": 1e3 * statistics.median(dec1),
        "decode_ms_b1_p90": 1e3 * float(np.quantile(dec1, 0.9)),
        "encode_cpu_ms_b1": 1e3 * statistics.median(enc1_cpu),
        "decode_cpu_ms_b1": 1e3 * statistics.median(dec1_cpu),
        "encode_chunks_per_s_b256": batch / statistics.median(encb),
        "decode_chunks_per_s_b256": batch / statistics.median(decb),
    }
    params = sum(p.numel() for p in model.parameters())
    print(f"{name:28s} {cfg.chunk_size:>3d}x{cfg.action_dim:<3d} {params / 1e6:5.2f}M "
          f"N={cfg.tokens_per_chunk:<4d} encode {row['encode_ms_b1']:6.2f} ms "
          f"(cpu {row['encode_cpu_ms_b1']:5.2f})  decode {row['decode_ms_b1']:6.2f} ms "
          f"(p90 {row['decode_ms_b1_p90']:5.2f}, cpu {row['decode_cpu_ms_b1']:5.2f})  |  "
          f"b{batch}: encode {row['encode_chunks_per_s_b256']:7.0f} chunks/s  decode "
          f"{row['decode_chunks_per_s_b256']:7.0f} chunks/s")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["g1_inspire_vq", "r1lite_wbc_vq",
                                                   "r1lite_bimanual_vq"])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus (ms: wall median; cpu: process "
          f"CPU time median)")
    for name, shape in SHAPES.items():
        model = FASTerVQ(VQConfig(**shape, **_preset(args.preset)))
        model.fit_normalizer(np.random.default_rng(0).normal(size=(256, shape["action_dim"])))
        model.init_codebooks(torch.randn(256, shape["chunk_size"], shape["action_dim"]))
        bench(f"{name} ({args.preset})", model, args.repeat, args.batch)
    for name in args.models:
        try:
            model = FASTerVQ.load(name)
        except FileNotFoundError:
            print(f"{name:28s} not found, skipped")
            continue
        bench(name, model, args.repeat, args.batch)
    return 0


def _preset(name: str) -> dict:
    from faster_ros.tokenizer.configuration import preset_fields

    fields = preset_fields(name)
    return {k: v for k, v in fields.items() if k not in ("steps", "warmup_steps", "batch_size")}


if __name__ == "__main__":
    raise SystemExit(main())
