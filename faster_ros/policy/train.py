"""Train FASTerVLA with teacher forcing and the BAR loss (FASTer section 3.2, A.2).

    python -m faster_ros.policy.train --data /work/shared/data/g1_inspire \
        --tokenizer g1_inspire_vq --preset tiny --out models/g1_inspire_vla
    torchrun --nproc_per_node 8 -m faster_ros.policy.train ...   # DDP, one process per GPU

AdamW (betas 0.9 / 0.95), cosine schedule with linear warm-up, gradient clipping, bf16 autocast
where the device supports it, a tqdm progress bar, checkpoints (``<run-dir>/checkpoint.pt``:
weights, optimiser, schedule, step, RNG) and ``--resume``. Held-out episodes are the action
tokenizer's (its ``config.provenance``) and are never trained on. The data source can be a
LeRobot dataset or a rosbag2 recording: anything ``faster_ros.data.read_episodes`` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from faster_ros.distributed import Distributed
from faster_ros.policy.configuration import PRESETS, FASTerVLAConfig
from faster_ros.policy.data import PolicyDataset, episode_stats, usable_episodes
from faster_ros.policy.lineage import training_runs
from faster_ros.policy.modeling import (
    POLICY_FILE,
    WEIGHTS_FILE,
    FASTerVLA,
    open_action_tokenizer,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="faster_ros.policy.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+",
                   help="dataset(s): LeRobot dir, rosbag2 dir/file, ...; several are "
                        "concatenated (episode names prefixed with their dataset's folder)")
    p.add_argument("--tokenizer", required=True, help="FASTerVQ dir or shipped model name")
    p.add_argument("--out", required=True, help="directory of the final save_pretrained")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--embodiment", default=None,
                   help="config/<name>.yaml: BAR block size and camera names from it")
    p.add_argument("--backbone-path", default="", help="local VLM checkpoint (pretrained)")
    p.add_argument("--cameras", nargs="*", default=None, help="camera names (default: first)")
    p.add_argument("--instruction", default=None, help="override the episodes' instruction")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None, help="camera frames resized to SxS")
    p.add_argument("--image-crop", type=float, nargs=4, default=None,
                   metavar=("TOP", "LEFT", "BOTTOM", "RIGHT"),
                   help="region of each frame the model sees, fractions of height / width")
    p.add_argument("--state-history", type=float, nargs="*", default=None, metavar="SECONDS",
                   help="state-history lags in s: the prompt also holds s_t - s_(t-L) per lag")
    p.add_argument("--no-prompt-state", action="store_true",
                   help="the prompt holds no state: the policy sees the cameras and the "
                        "instruction only (a relative policy still adds its actions to the state)")
    p.add_argument("--state-dropout", type=float, default=0.0, metavar="P",
                   help="training prompts lose their state with probability P, so the policy "
                        "learns to act from the cameras too")
    p.add_argument("--start-weight", type=float, nargs=2, default=(1.0, 0.0),
                   metavar=("WEIGHT", "SECONDS"),
                   help="windows starting within SECONDS of their episode's start are drawn "
                        "WEIGHT times as often (the start decides the reach and is rare)")
    p.add_argument("--pad-end", action="store_true",
                   help="also train on chunks starting in each episode's last chunk_size - 1 "
                        "steps, padded with the final action (LeRobot/ACT; without it the "
                        "policy never saw the end of a task as a chunk start)")
    p.add_argument("--prior-hidden", type=int, default=None,
                   help="motion-prior MLP width (needs --state-history; 0: none)")
    p.add_argument("--prior-steps", type=int, default=1000,
                   help="L1 fitting steps of the motion prior (batch 128), before the policy")
    p.add_argument("--init-from", default=None, metavar="POLICY",
                   help="start from the weights of this saved policy (same architecture and "
                        "held-out split; e.g. fine-tune a shipped model with a longer prompt)")
    p.add_argument("--vision-init", default=None, metavar="DIR",
                   help="start the vision tower + projector from a pretrained one "
                        "(faster-ros sim-vision; same image size and crop)")
    p.add_argument("--freeze-vision", action="store_true",
                   help="keep the vision tower + projector fixed (needs --vision-init or "
                        "--backbone-path)")
    p.add_argument("--chunk-l1", type=float, default=None, metavar="W",
                   help="auxiliary chunk regression: weight of the L1 of a linear head on the "
                        "first block's hidden states against the normalised chunk (config "
                        "chunk_l1_weight; FASTerVQ tokenizers; unused at inference)")
    p.add_argument("--keypoints", type=int, default=None, metavar="K",
                   help="K spatial-softmax keypoint image tokens per camera beside the patch "
                        "tokens (config keypoints; 0: none)")
    p.add_argument("--locator", default=None, metavar="DIR",
                   help="an object locator (faster-ros sim-locator) the policy runs on its "
                        "camera frame; its estimate goes into the prompt as object bins (config "
                        "cues). Frozen; run on every training frame first (cached)")
    p.add_argument("--stride", type=int, default=1, help="window stride within episodes")
    p.add_argument("--run-dir", default=None, help="checkpoints (default runs/<out name>)")
    p.add_argument("--cache-dir", default="runs/frame_cache", help="resized-frame .npy cache")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bundle-tokenizer", action="store_true",
                   help="copy the tokenizer into <out>/action_tokenizer and reference it there")
    p.add_argument("--no-augment", action="store_true",
                   help="no image shift / state-bin jitter augmentation")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared CPU, multi-threaded ops of a "
                        "tiny model stall on OpenMP barriers; 0 keeps torch's default)")
    return p.parse_args(argv)


def heldout_names(tokenizer: Any) -> set[str]:
    """Episode names (the part after the last "/") the action tokenizer held out: every
    ``heldout_episodes`` list found in its ``config.provenance``. Matching on the episode part
    lets a tokenizer trained on another export of the same dataset (npz vs LeRobot) be used."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("heldout_episodes", "heldout") and isinstance(value, list):
                    found.update(str(n).rsplit("/", 1)[-1] for n in value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(getattr(tokenizer.config, "provenance", {}) or {})
    return found


def read_sources(sources: Sequence[str], read: Any) -> list:
    """The episodes of every source, in order. With several sources each episode's name gets
    its dataset folder in front (``transfer_cube/lerobot/episode_000009``), so names stay
    unique; the held-out split matches on the last part, as for one source."""
    if len(sources) == 1:
        return read(sources[0])
    episodes = []
    for source in sources:
        folder = Path(source).resolve()
        tag = folder.parent.name if folder.name in ("lerobot", "bags") else folder.name
        episodes += [replace(ep, name=f"{tag}/{ep.name}") for ep in read(source)]
    names = [ep.name for ep in episodes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"--data: episode names collide across the sources: {dup[:3]}")
    return episodes


def split_by_tokenizer(episodes: list, tokenizer: Any) -> tuple[list, list]:
    """(train, held-out) episodes, held out exactly as the action tokenizer did."""
    held = heldout_names(tokenizer)
    if not held:
        raise ValueError("the action tokenizer records no held-out episodes in its provenance")
    is_held = [ep.name.rsplit("/", 1)[-1] in held for ep in episodes]
    return ([ep for ep, h in zip(episodes, is_held) if not h],
            [ep for ep, h in zip(episodes, is_held) if h])


def lr_lambda(cfg: FASTerVLAConfig, steps: int):
    """Linear warm-up then cosine decay to ``min_lr_ratio`` (multiplier of the base lr)."""
    warm = min(cfg.warmup_steps, max(steps // 10, 1))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min((step - warm) / max(steps - warm, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi *
                                                                               progress))
    return f


def _autocast(cfg: FASTerVLAConfig, device: torch.device):
    ok = cfg.bf16 and (device.type == "cpu" or torch.cuda.is_bf16_supported())
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=ok)


def locator_cues(args: argparse.Namespace, train_eps: list) -> tuple[Any, Any]:
    """(the --locator's ObjectLocator or None, episode -> (T, C) cues or None): the locator's
    estimate on every frame, cached under --cache-dir by the locator's weights."""
    if not args.locator:
        return None, None
    from faster_ros.policy.data import episode_cues
    from faster_ros.policy.locator import WEIGHTS, ObjectLocator

    locator = ObjectLocator.load(args.locator)
    tag = hashlib.sha1((Path(args.locator) / WEIGHTS).read_bytes()).hexdigest()[:16]
    memo: dict[str, np.ndarray] = {}

    def cues(ep: Any) -> np.ndarray:
        if ep.name not in memo:
            memo[ep.name] = episode_cues(ep, locator, args.cache_dir, tag)
        return memo[ep.name]

    return locator, cues


def build_policy(args: argparse.Namespace, tokenizer: Any, train_eps: list,
                 locator: Any = None, cues: Any = None) -> FASTerVLA:
    prov = getattr(tokenizer.config, "provenance", {}) or {}
    overrides: dict[str, Any] = {"seed": args.seed,
                                 "relative_to_state": bool(prov.get("relative_to_state")),
                                 "absolute_dims": tuple(prov.get("absolute_dims", ()))}
    for key, value in (("steps", args.steps), ("batch_size", args.batch_size),
                       ("learning_rate", args.lr), ("block_size", args.block_size),
                       ("image_size", args.image_size),
                       ("image_crop", tuple(args.image_crop) if args.image_crop else None)):
        if value is not None:
            overrides[key] = value
    if args.backbone_path:
        overrides["backbone_path"] = args.backbone_path
    if args.state_history is not None:
        overrides["state_history_s"] = tuple(args.state_history)
    if args.prior_hidden is not None:
        overrides["prior_hidden"] = args.prior_hidden
    if args.no_prompt_state:
        overrides["prompt_state"] = False
    if args.chunk_l1 is not None:
        overrides["chunk_l1_weight"] = args.chunk_l1
    if args.keypoints is not None:
        overrides["keypoints"] = args.keypoints
    if locator is not None:
        overrides["cues"] = len(locator.cfg.names)
    cams = args.cameras or sorted(next(ep for ep in train_eps if ep.frames).frames)[:1]
    if getattr(tokenizer.config, "kind", "") == "fast" and args.block_size is None:
        # a BPE list is decoded token by token: blocks predicted in parallel gave lists of the
        # wrong length (93 of 93 held-out ALOHA chunks undecodable at the config's block 7)
        overrides["block_size"] = 1
    if args.embodiment:
        from faster_ros.embodiment import load_embodiment

        emb = load_embodiment(args.embodiment)
        overrides.setdefault("block_size", emb.policy.block_size)
        cams = args.cameras or [c.name for c in emb.cameras]
    cams = [c.rsplit(".", 1)[-1] for c in cams]  # observation.images.cam_high -> cam_high
    ep0 = train_eps[0]
    cfg = FASTerVLAConfig.from_tokenizer(args.preset, tokenizer.config, cameras=tuple(cams),
                                         num_cameras=len(cams), state_dim=ep0.state.shape[1],
                                         **overrides)
    usable = usable_episodes(train_eps, cams, cfg.chunk_size)
    stats = episode_stats(usable, cfg.state_history_s)
    if locator is not None:
        every = np.concatenate([cues(ep) for ep in tqdm(usable, desc="locating", leave=False)])
        stats.update(locator=locator, cue_low=every.min(0), cue_high=every.max(0))
    instructions = sorted({ep.instruction for ep in train_eps if ep.instruction})
    torch.manual_seed(args.seed)
    return FASTerVLA.build(cfg, words=instructions, action_tokenizer=tokenizer,
                           tokenizer_ref=tokenizer_reference(args.tokenizer), **stats)


def init_weights(model: FASTerVLA, source: str, held_eps: list, load: bool = True) -> None:
    """Copy the weights of the saved policy ``source`` into ``model`` (every tensor, same
    shapes), after checking that it held out the same episodes (no leak into the evaluation)."""
    from faster_ros.paths import model_path

    directory = model_path(source)
    prov = json.loads((directory / POLICY_FILE).read_text()).get("provenance", {})
    theirs = {n.rsplit("/", 1)[-1] for n in prov.get("heldout_episodes", [])}
    ours = {ep.name.rsplit("/", 1)[-1] for ep in held_eps}
    if theirs != ours:
        raise ValueError(f"--init-from {source}: it held out {sorted(theirs)[:3]}..., this run "
                         f"holds out {sorted(ours)[:3]}...: its weights may have seen our "
                         f"held-out episodes")
    if load:  # every tensor but a motion prior the source may not have
        missing, unexpected = model.load_state_dict(load_file(directory / WEIGHTS_FILE),
                                                    strict=False)
        missing = [k for k in missing if not k.startswith("prior.")]
        if missing or unexpected:
            raise ValueError(f"--init-from {source}: weights do not match this policy (missing "
                             f"{missing[:3]}, unexpected {unexpected[:3]})")
    model.provenance["init_from"] = dict(path=str(directory), steps=prov.get("steps"),
                                         wall_time_s=prov.get("wall_time_s"),
                                         chain=training_runs(directory))


def fit_prior(model: FASTerVLA, episodes: list, steps: int, seed: int = 0,
              batch_size: int = 128) -> float:
    """Fit the policy's motion prior (L1, AdamW 1e-3) to a_{t+k} - s_t from the state and the
    past states of every training window (stride 1), then freeze it. Returns the mean L1 of
    the last 100 steps."""
    from faster_ros.data.episode import chunk_windows
    from faster_ros.policy.data import past_states
    from faster_ros.policy.modeling import MotionPrior

    cfg, prior = model.config, model.prior
    states, history, target = [], [], []
    for ep in episodes:
        for t, chunk in chunk_windows(ep.actions, cfg.chunk_size, 1):
            states.append(ep.state[t])
            history.append(past_states(ep, t, cfg.state_history_s))
            target.append(chunk - ep.state[t])  # a prior has no absolute_dims (config)
    as_t = lambda x: torch.as_tensor(np.stack(x), dtype=torch.float32)  # noqa: E731
    states, history, target = as_t(states), as_t(history), as_t(target)
    feats = MotionPrior.features(states, history)
    with torch.no_grad():
        prior.mean.copy_(feats.mean(0))
        prior.std.copy_(feats.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(prior.net.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    prior.train()
    for _ in tqdm(range(steps), desc="motion prior", dynamic_ncols=True):
        i = torch.randint(0, len(states), (batch_size,), generator=gen)
        loss = (prior(states[i], history[i]) - target[i]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    prior.requires_grad_(False)
    return float(np.mean(losses[-100:]))


def tokenizer_reference(name_or_path: str) -> str:
    """A shipped tokenizer is referenced by name (portable), anything else by absolute path."""
    from faster_ros.paths import data_dir

    path = Path(name_or_path)
    if not path.is_dir():
        return name_or_path
    try:
        models = data_dir("models").resolve()
        if path.resolve().parent == models:
            return path.resolve().name
    except FileNotFoundError:
        pass
    return str(path.resolve())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.freeze_vision and not (args.vision_init or args.backbone_path or args.init_from):
        raise SystemExit("--freeze-vision: the tower would stay random; give --vision-init, "
                         "--backbone-path or --init-from")
    if args.vision_init and args.init_from:
        raise SystemExit("--vision-init with --init-from: the saved policy brings its own tower")
    if args.threads:
        torch.set_num_threads(args.threads)
    env = Distributed(args.device)
    rank, world, device = env.rank, env.world, env.device
    from faster_ros.data import read_episodes
    tokenizer = open_action_tokenizer(args.tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # episodes without video are reported by the reader
        episodes = read_sources(args.data, read_episodes)
    train_eps, held_eps = split_by_tokenizer(episodes, tokenizer)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.out).name)
    ckpt_path = run_dir / "checkpoint.pt"
    locator, cues = locator_cues(args, train_eps)
    model = build_policy(args, tokenizer, train_eps, locator, cues)
    if args.init_from:  # on resume the checkpoint has the weights: only the provenance
        init_weights(model, args.init_from, held_eps,
                     load=not (args.resume and ckpt_path.is_file()))
    cfg = model.config
    if args.vision_init:
        from faster_ros.policy.vision_pretrain import load_vision_init

        meta = load_vision_init(model.backbone, cfg, args.vision_init)
        model.provenance["vision_init"] = dict(path=str(Path(args.vision_init).resolve()),
                                               val_error=meta.get("val_error"),
                                               frozen=args.freeze_vision)
    if args.freeze_vision:
        from faster_ros.policy.vision_pretrain import vision_parameters

        for param in vision_parameters(model.backbone):
            param.requires_grad_(False)
    ckpt = None
    if args.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
    prior_l1 = None
    if model.prior is not None:
        if ckpt is None:  # the prior is fitted first: the codes encode what it leaves
            prior_l1 = fit_prior(model, usable_episodes(train_eps, cfg.cameras, cfg.chunk_size),
                                 args.prior_steps, args.seed)
        model.prior.requires_grad_(False)
    dataset = PolicyDataset(train_eps, tokenizer, model.processor, stride=args.stride,
                            cache_dir=args.cache_dir, instruction=args.instruction,
                            anchor=model.anchor if model.prior is not None else None,
                            state_dropout=args.state_dropout,
                            start_weight=tuple(args.start_weight),
                            chunk_targets=cfg.chunk_l1_weight > 0, cues=cues,
                            pad_end=args.pad_end)
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=cfg.learning_rate, betas=cfg.betas,
                            weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, cfg.steps))
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(args.seed + 1000 * rank)
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        step, elapsed = ckpt["step"], ckpt["elapsed_s"]
        rng.bit_generator.state = ckpt["rng"][rank] if rank < len(ckpt["rng"]) else \
            rng.bit_generator.state
    # find_unused_parameters: a checkpoint's vision tower may carry a pooling head the policy
    # never uses (SigLIP's attention-pool head), which gets no gradient
    net = (torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
           if world > 1 else model)
    if rank == 0:
        params = model.num_parameters()
        print(f"FASTerVLA {args.preset}: {params['total'] / 1e6:.2f}M params (expert "
              f"{params['expert'] / 1e6:.2f}M), {len(dataset)} samples from "
              f"{len(dataset.episodes)} episodes, {len(held_eps)} held out, N="
              f"{cfg.tokens_per_chunk} tokens, B={cfg.block_size}", flush=True)
    bar = tqdm(total=cfg.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    start = time.perf_counter() - elapsed
    metrics: dict[str, float] = {}
    while step < cfg.steps:
        batch = dataset.sample(cfg.batch_size, rng, augment=not args.no_augment)
        batch = {k: v.to(device) for k, v in batch.items()}
        with _autocast(cfg, device):
            loss, metrics = net(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['token_acc']:.3f}",
                        lr=f"{sched.get_last_lr()[0]:.1e}")
        if rank == 0 and (step % args.checkpoint_every == 0 or step == cfg.steps):
            run_dir.mkdir(parents=True, exist_ok=True)
            torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), step=step,
                            elapsed_s=time.perf_counter() - start,
                            rng=[rng.bit_generator.state]), ckpt_path)
    bar.close()
    if rank == 0:
        wall = time.perf_counter() - start
        model.provenance = dict(
            **{k: model.provenance[k] for k in ("init_from", "vision_init")
               if k in model.provenance},
            **({} if locator is None else {"locator": str(Path(args.locator).resolve())}),
            data=args.data[0] if len(args.data) == 1 else list(args.data), steps=step,
            wall_time_s=round(wall, 1),
            windows=dict(pad_end=args.pad_end, start_weight=list(args.start_weight)),
            batch_size=cfg.batch_size * world, processes=world, device=str(device),
            train_episodes=[ep.name for ep in dataset.episodes],
            heldout_episodes=[ep.name for ep in held_eps],
            **({} if prior_l1 is None else {"prior_steps": args.prior_steps,
                                             "prior_train_l1": round(prior_l1, 5)}),
            final_metrics=metrics,
            instruction=args.instruction or train_eps[0].instruction,
            command="python -m faster_ros.policy.train " + " ".join(sys.argv[1:]
                                                                     if argv is None
                                                                     else argv))
        if args.bundle_tokenizer:
            tokenizer.save(Path(args.out) / "action_tokenizer")
            model.tokenizer_ref = "action_tokenizer"
        model.save_pretrained(args.out)
        print(f"saved {args.out} after {step} steps, {wall / 60:.1f} min", flush=True)
    env.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
