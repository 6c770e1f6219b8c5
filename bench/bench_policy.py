"""FASTerVLA decoding benchmark: BAR vs token-wise AR, passes and latency per chunk.

Settings (FASTer Table 4): single-arm N = 3 x 1 x 7 = 21 tokens, whole-body N = 3 x 2 x 21 = 126
tokens, both with BAR block size B = 7 (ceil(N / B) = 3 and 18 passes; token-wise AR: N passes).
Models: the "tiny" config and a real-size configuration with random weights (timing only;
default "smolvlm-500m" on CPU, "paligemma-3b" with --device cuda). BAR and AR run on the same
model, the same observation and the same process; the speed-up is measured, not asserted.

    python bench/bench_policy.py                      # tiny + smolvlm-500m on CPU, ~3-5 min
    python bench/bench_policy.py --device cuda --real paligemma-3b smolvlm-500m
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch

from faster_ros.policy import FASTerVLA, FASTerVLAConfig

SETTINGS = {  # name: (action_dim, chunk_size, codebooks, code_horizon, code_dims, cameras)
    "single-arm": (7, 20, 3, 1, 7, 2),
    "whole-body": (21, 32, 3, 2, 21, 3),
}


class RandomCodec:
    """Detokeniser stand-in with FASTerVQ's methods: a fixed random linear map codes -> chunk
    (timing of the detokenisation step is then only indicative)."""

    def __init__(self, cfg: FASTerVLAConfig):
        self.config = SimpleNamespace(codebook_size=cfg.codebook_size)
        self.shape = (cfg.codebooks, cfg.code_horizon, cfg.code_dims)
        self.proj = torch.randn(cfg.tokens_per_chunk, cfg.chunk_size * cfg.action_dim) * 1e-3
        self.out = (cfg.chunk_size, cfg.action_dim)

    def tokens_to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.reshape(-1, *self.shape)

    def decode(self, codes: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        if levels is not None:  # the first ``levels`` codebooks only, like FASTerVQ.decode
            codes = codes.clone()
            codes[:, levels:] = 0
        return (codes.flatten(1).float() @ self.proj).view(-1, *self.out)


def build(preset: str, setting: str, device: str, dtype: torch.dtype) -> FASTerVLA:
    dim, chunk, nc, ch, ca, cams = SETTINGS[setting]
    cfg = FASTerVLAConfig.preset(preset, action_dim=dim, chunk_size=chunk, codebooks=nc,
                                 code_horizon=ch, code_dims=ca, block_size=7, num_cameras=cams,
                                 state_dim=dim, greedy=True)
    torch.manual_seed(0)
    model = FASTerVLA.build(cfg, state_low=-np.ones(dim), state_high=np.ones(dim))
    model.action_tokenizer = RandomCodec(cfg)
    return model.to(device=device, dtype=dtype).eval()


def observation(cfg: FASTerVLAConfig) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    images = {f"cam{i}": rng.integers(0, 255, (168, 224, 3), dtype=np.uint8)
              for i in range(cfg.num_cameras)}
    return SimpleNamespace(images=images, state=rng.uniform(-1, 1, cfg.state_dim),
                           instruction="pick up the yellow bottle on the table")


def run(model: FASTerVLA, obs, block_size: int, repeats: int) -> dict:
    outs = [model.predict_action_chunk(obs, block_size=block_size, greedy=True)
            for _ in range(repeats)]
    med = lambda key: statistics.median(o.timing[key] for o in outs)  # noqa: E731
    decode = statistics.median(sum(o.timing["block_ms"]) for o in outs)
    return dict(passes=outs[0].passes, image=med("image_ms"), context=med("context_ms"),
                decode=decode, per_pass=decode / outs[0].passes,
                detok=med("detokenize_ms"), total=med("total_ms"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--real", nargs="*", default=None,
                   help="real-size presets (default: smolvlm-500m on CPU, both on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per mode (tiny)")
    p.add_argument("--real-repeats", type=int, default=1, help="timed runs per mode (real)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared CPU, OpenMP barriers of small "
                        "ops dominate with more; 0 keeps torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    real = args.real if args.real is not None else (
        ["paligemma-3b", "smolvlm-500m"] if cuda else ["smolvlm-500m"])
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"FASTerVLA decoding benchmark on {where}, torch {torch.__version__}")
    header = (f"{'model':<14}{'setting':<12}{'N':>4}{'mode':>7}{'passes':>7}{'image':>9}"
              f"{'context':>9}{'decode':>10}{'ms/pass':>9}{'detok':>7}{'total':>10}{'chunk*':>10}")
    print(header + "\n" + "-" * len(header))
    speedups = []
    for preset in ["tiny", *real]:
        dtype = torch.bfloat16 if (preset != "tiny" and cuda) else torch.float32
        repeats = args.repeats if preset == "tiny" else args.real_repeats
        for setting in SETTINGS:
            t0 = time.perf_counter()
            model = build(preset, setting, args.device, dtype)
            obs = observation(model.config)
            model.predict_action_chunk(obs, greedy=True)  # warm-up
            n = model.config.tokens_per_chunk
            rows = {mode: run(model, obs, b, repeats) for mode, b in (("AR", 1), ("BAR", 7))}
            # image encoding + context pass are the same work in both modes: use their median
            # over both, so the per-chunk ratio is not drowned by the noise of the shared part
            shared = statistics.median(r["image"] + r["context"] for r in rows.values())
            for r in rows.values():
                r["chunk"] = shared + r["decode"] + r["detok"]
            for mode, r in rows.items():
                print(f"{preset:<14}{setting:<12}{n:>4}{mode:>7}{r['passes']:>7}"
                      f"{r['image']:>9.1f}{r['context']:>9.1f}{r['decode']:>10.1f}"
                      f"{r['per_pass']:>9.2f}{r['detok']:>7.2f}{r['total']:>10.1f}"
                      f"{r['chunk']:>10.1f}")
            sp_dec = rows["AR"]["decode"] / rows["BAR"]["decode"]
            sp_tot = rows["AR"]["chunk"] / rows["BAR"]["chunk"]
            speedups.append((preset, setting, rows["AR"]["passes"], rows["BAR"]["passes"],
                             sp_dec, sp_tot, time.perf_counter() - t0))
            del model
    print("\nchunk* = shared image + context (median over both modes) + decode + detok")
    print("BAR vs token-wise AR, same model, same run (times in ms, medians):")
    for preset, setting, ar, bar, sp_dec, sp_tot, wall in speedups:
        print(f"  {preset:<14}{setting:<12} passes {ar:>3} -> {bar:>2}   decode x{sp_dec:.2f}"
              f"   per chunk x{sp_tot:.2f}   ({wall:.0f} s)")


if __name__ == "__main__":
    main()
