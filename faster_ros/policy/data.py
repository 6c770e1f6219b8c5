"""Training samples for FASTerVLA from :class:`faster_ros.data.Episode` lists.

Conditioning window 1 step (FASTer A.2): sample (episode, t) = camera frame(s) at t, state at t
(and, with ``state_history_s``, the states at t - L for each lag L: the step round(L * fps)
before, the episode's first state when t is closer to the start), the episode's instruction,
and the action chunk a_t .. a_{t+H-1} tokenised by FASTerVQ (``tok.encode`` then
``tok.codes_to_tokens``: the policy never reorders codes). Episodes come from
``faster_ros.data.read_episodes`` (LeRobot datasets, rosbag2 recordings, ...); this module does
no file parsing of its own.

Video decoding dominates CPU training, so frames are decoded once, resized to the model's input
size and kept as uint8 arrays, optionally cached as ``.npy`` files (e.g. under ``runs/``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faster_ros.data.episode import Episode, chunk_windows
from faster_ros.policy.processor import PromptProcessor, find_camera


def usable_episodes(episodes: Sequence[Episode], cameras: Sequence[str],
                    chunk_size: int) -> list[Episode]:
    """Episodes with state, every camera in ``cameras`` and at least one full chunk."""
    return [ep for ep in episodes if ep.state is not None and len(ep) >= chunk_size
            and all(find_camera(ep.frames, c) is not None for c in cameras)]


def start_probabilities(starts_s: Sequence[float], start_weight: tuple[float, float]
                        ) -> np.ndarray:
    """(M,) sampling probabilities of windows that start ``starts_s`` seconds into their
    episode: those within ``start_weight`` = (WEIGHT, SECONDS) of the start are drawn WEIGHT
    times as often (the start decides the reach and is rare)."""
    weight, seconds = start_weight
    if weight <= 0 or seconds < 0:
        raise ValueError(f"start_weight is (weight > 0, seconds >= 0), got {start_weight}")
    p = np.where(np.asarray(starts_s, np.float64) < seconds, weight, 1.0)
    return p / p.sum()


def draw_windows(rng: np.random.Generator, probabilities: np.ndarray, size: int) -> np.ndarray:
    """``size`` window indices drawn with ``probabilities``; equal ones keep the plain integer
    draw of earlier versions, so their runs reproduce."""
    if probabilities.min() == probabilities.max():
        return rng.integers(0, len(probabilities), size)
    return rng.choice(len(probabilities), size, p=probabilities)


def lag_steps(lag_s: float, fps: float) -> int:
    """A state-history lag in seconds -> steps of an episode at ``fps`` (at least 1)."""
    return max(1, round(lag_s * fps))


def past_states(ep: Episode, t: int, lags_s: Sequence[float]) -> np.ndarray:
    """(K, S) states of ``ep`` at t - L for each lag L in seconds (clamped to the first step,
    as a robot that has just started has no older state)."""
    return np.stack([ep.state[max(t - lag_steps(lag, ep.fps), 0)] for lag in lags_s])


def episode_stats(episodes: Sequence[Episode], history_s: Sequence[float] = ()
                  ) -> dict[str, np.ndarray]:
    """Per-dimension min / max of state and actions over ``episodes`` (training data) and,
    for each lag in ``history_s``, the motion span: the 99.5th percentile of |s_t - s_{t-L}|
    per dimension (``history_span`` (K, S))."""
    states = np.concatenate([ep.state for ep in episodes])
    actions = np.concatenate([ep.actions for ep in episodes])
    stats = dict(state_low=states.min(0), state_high=states.max(0),
                 action_low=actions.min(0), action_high=actions.max(0))
    if history_s:
        spans = []
        for lag in history_s:
            motion = np.concatenate([
                ep.state - ep.state[np.maximum(np.arange(len(ep)) - lag_steps(lag, ep.fps), 0)]
                for ep in episodes])
            spans.append(np.quantile(np.abs(motion), 0.995, axis=0))
        stats["history_span"] = np.stack(spans)
    return stats


def cached_array(cache_dir: str | Path | None, tag: str, shape: tuple[int, ...],
                 compute: Callable[[], np.ndarray], prefix: str = "") -> np.ndarray:
    """``compute()``, or its earlier result from ``cache_dir`` (a .npy named by a hash of
    ``tag``, used only if it has ``shape``). Written whole, then renamed: DDP ranks build the
    same cache at once."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{prefix}{hashlib.sha1(tag.encode()).hexdigest()[:16]}.npy"
        if path.is_file():
            array = np.load(path)
            if array.shape == shape:
                return array
    array = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, path)
    return array


def episode_cues(ep: Episode, locator: Any, cache_dir: str | Path | None = None,
                 tag: str = "") -> np.ndarray:
    """(T, C) float32: ``locator`` (:class:`faster_ros.policy.locator.ObjectLocator`) on every
    frame of its camera in ``ep``, cached as .npy under ``cache_dir`` (keyed by the episode
    and ``tag``, which should name the locator's weights)."""
    camera = find_camera(ep.frames, locator.cfg.camera)
    if camera is None:
        raise ValueError(f"{ep.name}: no camera {locator.cfg.camera!r} for the object locator "
                         f"(has {sorted(ep.frames)})")
    src = ep.frames[camera]
    return cached_array(
        cache_dir, f"{ep.source}|{ep.name}|{camera}|{tag}", (len(ep), len(locator.cfg.names)),
        lambda: locator.locate(np.stack([locator.cfg.prepare(src.get(i))
                                         for i in range(len(ep))]),
                               prepared=True).astype(np.float32), prefix="cues_")


def cached_frames(ep: Episode, camera: str, processor: PromptProcessor,
                  cache_dir: str | Path | None = None) -> np.ndarray:
    """All frames of one camera, resized for the model: (T, S, S, 3) uint8, cached as .npy."""
    s = processor.image_size
    camera = find_camera(ep.frames, camera)
    crop = processor.cfg.image_crop
    tag = f"{ep.source}|{ep.name}|{camera}|{s}" + (f"|crop{list(crop)}" if crop else "")
    src = ep.frames[camera]
    return cached_array(cache_dir, tag, (len(ep), s, s, 3),
                        lambda: np.stack([processor.resize(src.get(i)) for i in range(len(ep))]))


class PolicyDataset:
    """(frame(s) at t, state at t, instruction, FASTerVQ tokens of a_t .. a_{t+H-1}) samples
    (of a_{t+k} - s_t with ``relative_to_state``); ``actions`` (M, H, D) are the physical chunks.

    ``tokens`` (M, N) int64 are precomputed for all M windows; ``frames[camera][e]`` are the
    cached (T, S, S, 3) uint8 frames of episode e. ``pad_end``: windows start at every step to
    each episode's last, padded with its final action (:func:`chunk_windows`)."""

    def __init__(self, episodes: Sequence[Episode], action_tokenizer: Any,
                 processor: PromptProcessor, *, stride: int = 1,
                 cache_dir: str | Path | None = None, instruction: str | None = None,
                 encode_batch: int = 512,
                 anchor: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None,
                 state_dropout: float = 0.0, start_weight: tuple[float, float] = (1.0, 0.0),
                 chunk_targets: bool = False,
                 cues: Callable[[Episode], np.ndarray] | None = None,
                 pad_end: bool = False):
        cfg = processor.cfg
        if not 0.0 <= state_dropout <= 1.0:
            raise ValueError(f"state_dropout is a probability in [0, 1], got {state_dropout}")
        self.state_dropout = state_dropout
        cameras = cfg.cameras or tuple(sorted(episodes[0].frames))[: cfg.num_cameras]
        self.episodes = usable_episodes(episodes, cameras, cfg.chunk_size)
        if not self.episodes:
            raise ValueError(f"no episode has state, cameras {cameras} and {cfg.chunk_size} "
                             f"steps")
        self.processor, self.cameras, self.instruction = processor, tuple(cameras), instruction
        self.index: list[tuple[int, int]] = []
        windows = []
        for e, ep in enumerate(self.episodes):
            for t, chunk in chunk_windows(ep.actions, cfg.chunk_size, stride, pad_end=pad_end):
                self.index.append((e, t))
                windows.append(chunk)
        self.actions = np.stack(windows).astype(np.float32)  # (M, H, D) physical
        self.probabilities = start_probabilities(
            [t / self.episodes[e].fps for e, t in self.index], start_weight)
        actions = self.actions  # what the tokenizer encodes
        if cfg.relative_to_state:
            states = np.stack([self.episodes[e].state[t] for e, t in self.index])  # (M, S)
            if anchor is None:
                actions = actions - states[:, None, :].astype(np.float32) * cfg.relative_mask()
            else:  # e.g. FASTerVLA.anchor: state plus motion prior
                history = (np.stack([self.history(i) for i in range(len(self.index))])
                           if cfg.state_history_s else None)
                actions = actions - anchor(states, history)
        self.tokens = torch.cat([
            action_tokenizer.codes_to_tokens(action_tokenizer.encode(
                torch.as_tensor(actions[i: i + encode_batch])))
            for i in range(0, len(actions), encode_batch)]).long()  # (M, N)
        # what the tokenizer encodes, in its normalised space: the auxiliary chunk head's target
        self.chunks = None
        if chunk_targets:
            normalizer = getattr(action_tokenizer, "normalizer", None)
            if normalizer is None:
                raise ValueError(f"chunk targets need a tokenizer with a normalizer (FASTerVQ); "
                                 f"{type(action_tokenizer).__name__} has none")
            with torch.no_grad():
                self.chunks = normalizer.normalize(torch.as_tensor(actions)).values.float()
        self.frames = {c: [cached_frames(ep, c, processor, cache_dir) for ep in self.episodes]
                       for c in self.cameras}
        # per episode (T, C) object cues (e.g. a locator's estimate on every frame)
        self.cues: list[np.ndarray] | None = None
        if cfg.cues:
            if cues is None:
                raise ValueError(f"the config has {cfg.cues} object cues: pass cues=")
            self.cues = [np.asarray(cues(ep), np.float64) for ep in self.episodes]
            bad = [ep.name for ep, c in zip(self.episodes, self.cues)
                   if c.shape != (len(ep), cfg.cues)]
            if bad:
                raise ValueError(f"object cues must be (T, {cfg.cues}) per episode; wrong for "
                                 f"{bad[:3]}")

    def __len__(self) -> int:
        return len(self.index)

    def state(self, i: int) -> np.ndarray:
        e, t = self.index[i]
        return self.episodes[e].state[t]

    def history(self, i: int) -> np.ndarray | None:
        """(K, S) past states of window i at the config's lags (None without lags)."""
        lags = self.processor.cfg.state_history_s
        if not lags:
            return None
        e, t = self.index[i]
        return past_states(self.episodes[e], t, lags)

    def prompt(self, i: int, jitter: np.ndarray | None = None, drop_state: bool = False
               ) -> list[int]:
        e, t = self.index[i]
        ep = self.episodes[e]
        text = self.instruction if self.instruction is not None else ep.instruction
        cues = None if self.cues is None else self.cues[e][t]
        return self.processor.prompt_ids(text, ep.state[t], jitter, self.history(i), drop_state,
                                         cues)

    def collate(self, indices: Sequence[int], rng: np.random.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Batch of samples -> pixels (B, n_cam, 3, S, S), input_ids / text_valid (B, L),
        tokens (B, N). With ``rng``: training augmentation (:meth:`augment`) and state dropout
        (each prompt loses its state with probability ``state_dropout``)."""
        frames = np.stack([
            np.stack([self.frames[c][self.index[i][0]][self.index[i][1]] for c in self.cameras])
            for i in indices])  # (B, n_cam, S, S, 3)
        jitters: list[np.ndarray | None] = [None] * len(indices)
        drops = np.zeros(len(indices), dtype=bool)
        if rng is not None:
            frames, jitters = self.augment(frames, rng)
            if self.state_dropout:
                drops = rng.random(len(indices)) < self.state_dropout
        ids, valid = self.processor.pad([self.prompt(i, j, bool(d))
                                         for i, j, d in zip(indices, jitters, drops)])
        batch = dict(pixels=PromptProcessor.normalize(frames), input_ids=ids, text_valid=valid,
                     tokens=self.tokens[list(indices)])
        if self.chunks is not None:
            batch["chunk"] = self.chunks[list(indices)]
        return batch

    def augment(self, frames: np.ndarray, rng: np.random.Generator,
                shift: int = 2, state_jitter: float = 1.5) -> tuple[np.ndarray, list]:
        """Random image translation by up to ``shift`` pixels (edge padding) and a uniform
        +-``state_jitter``-bin perturbation of every state (and motion) value before
        discretisation."""
        b, n, s = frames.shape[:3]
        padded = np.pad(frames, ((0, 0), (0, 0), (shift, shift), (shift, shift), (0, 0)),
                        mode="edge")
        out = np.empty_like(frames)
        for i in range(b):
            dy, dx = rng.integers(0, 2 * shift + 1, 2)
            out[i] = padded[i, :, dy: dy + s, dx: dx + s]
        cfg = self.processor.cfg
        shape = (1 + len(cfg.state_history_s), cfg.state_dim)
        return out, [rng.uniform(-state_jitter, state_jitter, shape) for _ in range(b)]

    def sample(self, batch_size: int, generator: np.random.Generator,
               augment: bool = False) -> dict[str, torch.Tensor]:
        indices = draw_windows(generator, self.probabilities, batch_size).tolist()
        return self.collate(indices, generator if augment else None)
