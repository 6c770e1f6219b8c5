"""The FASTerVLA prompt: camera images, instruction and discretised proprioception as text.

FASTer (section 3.2): proprioceptive states are discretised into integers and tokenised as text,
the instruction follows the usual text pipeline and the embedding table is resized with |C| new
slots for the action codes. :class:`PromptProcessor` owns all of it:

- images: each camera frame (H, W, 3) uint8 RGB is resized to the backbone's square input and
  scaled to [-1, 1] (SigLIP's mean 0.5 / std 0.5, shared by PaliGemma and SmolVLM);
- text: ``<bos> instruction state b_1 b_2 ... b_S ;`` where b_i in 0..state_bins-1 is state i
  binned uniformly between the stored min / max of the training data; with
  ``cfg.state_history_s`` (lags L_1 .. L_K in seconds) the recent motion follows, one group per
  lag: ``m_1 ... m_S ;`` where m_i bins s_t,i - s_{t-L},i uniformly over [-r, r], r the stored
  per-lag, per-dimension span (99.5th percentile of |motion| in the training data; zero motion
  is the middle bin);
- action vocabulary: ``<act_0> .. <act_{K-1}> <BoBlk> <EoBlk>`` appended to the text vocabulary;
  ``action_offset`` is the vocabulary id of ``<act_0>``, so action-vocabulary id a (0..K+1) is
  backbone token ``action_offset + a``.

Tiny configurations use a word-level text tokenizer built here with the ``tokenizers`` library;
a real checkpoint directory brings its own tokenizer (``AutoTokenizer``), to which the action
tokens are added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from faster_ros.policy.configuration import FASTerVLAConfig

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
BASE_WORDS = (
    "state ; : . , ! ? a an the and or of on in into onto to from with at up down out off over "
    "under next left right top bottom front back pick place put push pull open close grasp "
    "release lift move turn rotate hold take give hand arm fold stack pour wipe press insert "
    "bottle cup mug bowl plate box drawer door table shelf basket towel cloth block cube ball "
    "can lid spoon fork object item red green blue yellow white black orange purple pink brown "
    "gray small large big it them then"
).split()
PROCESSOR_FILE = "processor.json"
TEXT_TOKENIZER_DIR = "text_tokenizer"


def action_token_names(codebook_size: int) -> list[str]:
    """The |C| = K + 2 action-vocabulary token strings, in action-id order."""
    return [f"<act_{i}>" for i in range(codebook_size)] + ["<BoBlk>", "<EoBlk>"]


def build_word_tokenizer(cfg: FASTerVLAConfig, words: Iterable[str] = ()) -> (
        PreTrainedTokenizerFast):
    """A word-level text tokenizer for tiny configurations: specials, state bins "0".."255",
    a base manipulation vocabulary plus ``words`` (e.g. the training instructions), then the
    action tokens. Lower-cased, split on whitespace and punctuation; unknown words -> <unk>."""
    pre = pre_tokenizers.Whitespace()
    vocab: dict[str, int] = {}
    extra = [w for text in words for w, _ in pre.pre_tokenize_str(text.lower())]
    for tok in [*SPECIAL_TOKENS, *map(str, range(cfg.state_bins)), *BASE_WORDS, *extra,
                *action_token_names(cfg.codebook_size)]:
        vocab.setdefault(tok, len(vocab))
    model = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    model.normalizer = normalizers.Lowercase()
    model.pre_tokenizer = pre
    fast = PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")
    fast.add_special_tokens({"additional_special_tokens": action_token_names(cfg.codebook_size)})
    return fast


def find_camera(available: Iterable[str], name: str) -> str | None:
    """The key of camera ``name`` in ``available``: the exact name, else the key whose last
    dotted part matches (LeRobot's ``observation.images.cam_high`` is the robot's ``cam_high``).
    """
    available = list(available)
    if name in available:
        return name
    short = name.rsplit(".", 1)[-1]
    matches = [k for k in available if k.rsplit(".", 1)[-1] == short]
    return matches[0] if len(matches) == 1 else None


def numeral_embeddings(count: int, width: int, std: float) -> torch.Tensor:
    """(count, width) sinusoidal codes of the integers 0..count-1 (periods from 4 to 4 * count,
    geometric), scaled to ``std``: the initial embeddings of the state-bin tokens of a
    from-scratch vocabulary, so that neighbouring bins start out similar (a pretrained LM
    already knows its numerals)."""
    half = width // 2
    periods = 4.0 * count ** (torch.arange(half, dtype=torch.float64) / max(half - 1, 1))
    angles = torch.arange(count, dtype=torch.float64)[:, None] * (2 * np.pi / periods)
    codes = torch.cat([angles.sin(), angles.cos()], dim=1)
    codes = torch.cat([codes, torch.zeros(count, width - codes.shape[1])], dim=1)
    return (codes / codes.std() * std).float()


class PromptProcessor:
    """Observation -> backbone inputs: ``pixels (n_cam, 3, S, S)`` and prompt token ids.

    ``state_low`` / ``state_high`` (S,) are the per-dimension bin edges (training min / max);
    ``history_span`` (K, S) the motion ranges of the K ``cfg.state_history_s`` lags;
    ``cue_low`` / ``cue_high`` (C,) the ranges of the ``cfg.cues`` object cues."""

    def __init__(self, cfg: FASTerVLAConfig, text_tokenizer: PreTrainedTokenizerFast,
                 state_low: np.ndarray, state_high: np.ndarray, image_size: int | None = None,
                 history_span: np.ndarray | None = None, cue_low: np.ndarray | None = None,
                 cue_high: np.ndarray | None = None):
        self.cfg = cfg
        if cfg.cues and (cue_low is None or cue_high is None):
            raise ValueError(f"PromptProcessor: the config has {cfg.cues} object cues but no "
                             f"cue_low / cue_high")
        self.cue_low = np.zeros(0) if not cfg.cues else np.asarray(cue_low, np.float64)
        self.cue_high = np.zeros(0) if not cfg.cues else np.asarray(cue_high, np.float64)
        if self.cue_low.shape != (cfg.cues,) or self.cue_high.shape != (cfg.cues,) or not (
                np.all(np.isfinite(self.cue_low)) and np.all(np.isfinite(self.cue_high))):
            raise ValueError(f"PromptProcessor: cue_low / cue_high must be finite ({cfg.cues},), "
                             f"got {self.cue_low.shape} / {self.cue_high.shape}")
        k = len(cfg.state_history_s)
        if k and history_span is None:
            raise ValueError(f"PromptProcessor: the config has {k} state-history lags but no "
                             f"history_span was given")
        span = np.zeros((0, cfg.state_dim)) if not k else np.asarray(history_span, np.float64)
        if span.shape != (k, cfg.state_dim) or not np.all(np.isfinite(span)):
            raise ValueError(f"PromptProcessor: history_span must be finite ({k}, "
                             f"{cfg.state_dim}), got {span.shape}")
        self.history_span = np.maximum(span, 1e-6)
        self.text = text_tokenizer
        self.image_size = int(image_size or cfg.image_size)
        self.state_low = np.asarray(state_low, dtype=np.float64).reshape(cfg.state_dim)
        self.state_high = np.asarray(state_high, dtype=np.float64).reshape(cfg.state_dim)
        names = action_token_names(cfg.codebook_size)
        missing = [n for n in names if n not in self.text.get_vocab()]
        if missing:
            self.text.add_tokens(missing, special_tokens=True)
        ids = self.text.convert_tokens_to_ids(names)
        if ids != list(range(ids[0], ids[0] + len(names))):
            raise ValueError("action tokens must take contiguous text-vocabulary ids")
        self.action_offset = int(ids[0])
        self.pad_id = int(self.text.pad_token_id if self.text.pad_token_id is not None else 0)
        self.bos_id = self.text.bos_token_id

    @property
    def vocab_size(self) -> int:
        """Rows the backbone's embedding table needs: text vocabulary + the |C| action slots."""
        return self.action_offset + self.cfg.action_vocab_size

    # ------------------------------------------------------------------ images
    def images(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB frames, one per camera -> (n_cam, 3, S, S) float in [-1, 1]."""
        if len(frames) != self.cfg.num_cameras:
            raise ValueError(f"expected {self.cfg.num_cameras} camera images, got {len(frames)}")
        out = []
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"camera image must be (H, W, 3) uint8 RGB, got "
                                 f"{frame.shape} {frame.dtype}")
            out.append(self.resize(frame))
        return self.normalize(np.stack(out))

    def resize(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (S, S, 3) uint8 (:func:`resize_frame` with the config's crop)."""
        return resize_frame(frame, self.image_size, self.cfg.image_crop)

    @staticmethod
    def normalize(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(..., S, S, 3) uint8 -> (..., 3, S, S) float32 in [-1, 1]."""
        x = torch.as_tensor(frames).float().div(127.5).sub(1.0)
        return x.movedim(-1, -3)

    def select_cameras(self, images: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The model's cameras, in order, from an observation's ``images`` mapping (names
        matched by :func:`find_camera`)."""
        names = self.cfg.cameras or tuple(sorted(images))[: self.cfg.num_cameras]
        keys = [find_camera(images, n) for n in names]
        if None in keys or len(names) != self.cfg.num_cameras:
            missing = names[keys.index(None)] if None in keys else names
            raise ValueError(f"observation lacks camera {missing!r}; the model needs "
                             f"{self.cfg.num_cameras}: {names} (got {sorted(images)})")
        return [images[k] for k in keys]

    # ------------------------------------------------------------------ text
    def state_bins(self, state: np.ndarray, jitter: np.ndarray | None = None) -> np.ndarray:
        """(..., S) state -> (..., S) int64 bins in 0..state_bins-1 (clipped to the range)."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape[-1] != self.cfg.state_dim:
            raise ValueError(f"state must have {self.cfg.state_dim} values, got "
                             f"{state.shape[-1]}")
        span = np.maximum(self.state_high - self.state_low, 1e-8)
        unit = (state - self.state_low) / span
        bins = unit * self.cfg.state_bins + (0.0 if jitter is None else jitter)
        bins = np.floor(bins).astype(np.int64)
        return np.clip(bins, 0, self.cfg.state_bins - 1)

    def motion_bins(self, state: np.ndarray, history: np.ndarray,
                    jitter: np.ndarray | None = None) -> np.ndarray:
        """State (S,) and past states (K, S) at the ``cfg.state_history_s`` lags -> (K, S) int64
        bins of s_t - s_{t-L} over [-span, span] (clipped; zero motion is the middle bin)."""
        lags = self.cfg.state_history_s
        history = np.asarray(history, dtype=np.float64)
        if history.shape != (len(lags), self.cfg.state_dim):
            raise ValueError(f"state history must be ({len(lags)}, {self.cfg.state_dim}): the "
                             f"state at each of the lags {lags} s, got {history.shape}")
        if not np.all(np.isfinite(history)):
            raise ValueError("state history has non-finite values")
        motion = np.asarray(state, dtype=np.float64)[None] - history
        unit = (motion + self.history_span) / (2 * self.history_span)
        bins = np.floor(unit * self.cfg.state_bins + (0.0 if jitter is None else jitter))
        return np.clip(bins.astype(np.int64), 0, self.cfg.state_bins - 1)

    def cue_bins(self, cues: np.ndarray) -> np.ndarray:
        """(C,) object cues -> (C,) int64 bins in 0..state_bins-1 over the training range
        (clipped: a locator's estimate outside it reads as the nearest edge)."""
        cues = np.asarray(cues, dtype=np.float64)
        if cues.shape != (self.cfg.cues,) or not np.all(np.isfinite(cues)):
            raise ValueError(f"object cues must be {self.cfg.cues} finite values, got "
                             f"{cues.shape} {cues}")
        unit = (cues - self.cue_low) / np.maximum(self.cue_high - self.cue_low, 1e-8)
        return np.clip(np.floor(unit * self.cfg.state_bins).astype(np.int64), 0,
                       self.cfg.state_bins - 1)

    def state_bin_ids(self) -> list[int]:
        """Vocabulary ids of the state-bin tokens "0" .. str(state_bins - 1)."""
        return self.text.convert_tokens_to_ids([str(b) for b in range(self.cfg.state_bins)])

    def prompt_text(self, instruction: str, state: np.ndarray, jitter: np.ndarray | None = None,
                    history: np.ndarray | None = None, drop_state: bool = False,
                    cues: np.ndarray | None = None) -> str:
        """``jitter`` in bins is added before rounding (training augmentation): (S,) for the
        state, or (1 + K, S) for the state and the K motion groups. ``history`` (K, S): the
        states at the ``cfg.state_history_s`` lags (required when the config has lags).
        Without ``cfg.prompt_state``, or with ``drop_state`` (training's state dropout), the
        prompt holds no state. ``cues`` (C,): the object cues (required with ``cfg.cues``),
        last, as ``object b1 .. bC ;``."""
        text = self._state_text(instruction, state, jitter, history, drop_state)
        if self.cfg.cues:
            if cues is None:
                raise ValueError(f"this policy needs {self.cfg.cues} object cues (its locator's "
                                 f"estimate) in the prompt")
            text += " object " + " ".join(str(b) for b in self.cue_bins(cues)) + " ;"
        return text

    def _state_text(self, instruction: str, state: np.ndarray, jitter: np.ndarray | None,
                    history: np.ndarray | None, drop_state: bool) -> str:
        if drop_state or not self.cfg.prompt_state:
            return f"{instruction.strip()} ;"
        jitter = None if jitter is None else np.asarray(jitter).reshape(-1, self.cfg.state_dim)
        bins = self.state_bins(state, None if jitter is None else jitter[0])
        text = f"{instruction.strip()} state {' '.join(str(b) for b in bins)} ;"
        if self.cfg.state_history_s:
            if history is None:
                raise ValueError(f"this policy needs the state history: the state "
                                 f"{self.cfg.state_history_s} s before the observation "
                                 f"(Observation.state_history)")
            motion_jitter = None if jitter is None or len(jitter) == 1 else jitter[1:]
            for row in self.motion_bins(state, history, motion_jitter):
                text += " " + " ".join(str(b) for b in row) + " ;"
        return text

    def prompt_ids(self, instruction: str, state: np.ndarray,
                   jitter: np.ndarray | None = None, history: np.ndarray | None = None,
                   drop_state: bool = False, cues: np.ndarray | None = None) -> list[int]:
        """Token ids of ``<bos> instruction state bins ; [motion bins ;]*K`` (instruction cut
        to ``max_text_tokens``); see :meth:`prompt_text`."""
        words = self.text(instruction.strip(), add_special_tokens=False)["input_ids"]
        words = words[: self.cfg.max_text_tokens]
        rest = self.text(self.prompt_text("", state, jitter, history, drop_state, cues),
                         add_special_tokens=False)["input_ids"]
        head = [self.bos_id] if self.bos_id is not None else []
        return head + list(words) + list(rest)

    def pad(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad prompts -> ids (B, L) int64 and valid (B, L) bool."""
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.pad_id, dtype=torch.long)
        valid = torch.zeros((len(prompts), length), dtype=torch.bool)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = torch.as_tensor(p, dtype=torch.long)
            valid[i, : len(p)] = True
        return ids, valid

    # ------------------------------------------------------------------ I/O
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.text.save_pretrained(directory / TEXT_TOKENIZER_DIR)
        meta = dict(action_offset=self.action_offset, image_size=self.image_size,
                    state_low=self.state_low.tolist(), state_high=self.state_high.tolist(),
                    history_span=self.history_span.tolist(), cue_low=self.cue_low.tolist(),
                    cue_high=self.cue_high.tolist())
        (directory / PROCESSOR_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, cfg: FASTerVLAConfig) -> PromptProcessor:
        directory = Path(directory)
        meta = json.loads((directory / PROCESSOR_FILE).read_text())
        text = AutoTokenizer.from_pretrained(directory / TEXT_TOKENIZER_DIR, local_files_only=True)
        span = np.asarray(meta.get("history_span", []), np.float64).reshape(-1, cfg.state_dim)
        proc = cls(cfg, text, np.asarray(meta["state_low"]), np.asarray(meta["state_high"]),
                   image_size=meta["image_size"], history_span=span,
                   cue_low=np.asarray(meta.get("cue_low", [])),
                   cue_high=np.asarray(meta.get("cue_high", [])))
        if proc.action_offset != meta["action_offset"]:
            raise ValueError(f"{directory}: action tokens at id {proc.action_offset}, saved "
                             f"{meta['action_offset']}")
        return proc

    @classmethod
    def from_backbone_dir(cls, local_dir: str | Path, cfg: FASTerVLAConfig,
                          state_low: np.ndarray, state_high: np.ndarray,
                          image_size: int, history_span: np.ndarray | None = None,
                          cue_low: np.ndarray | None = None, cue_high: np.ndarray | None = None
                          ) -> PromptProcessor:
        """The checkpoint's own tokenizer, with the action tokens added."""
        text = AutoTokenizer.from_pretrained(local_dir, local_files_only=True)
        return cls(cfg, text, state_low, state_high, image_size=image_size,
                   history_span=history_span, cue_low=cue_low, cue_high=cue_high)


def resize_frame(frame: np.ndarray, size: int | tuple[int, int],
                 crop: tuple[float, ...] = ()) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, or (height, width, 3) for ``size`` = (height,
    width): the ``crop`` (top, left, bottom, right as fractions of height / width; empty: whole
    frame), then the resize (area interpolation when shrinking both ways)."""
    height, width = (int(size), int(size)) if np.ndim(size) == 0 else size
    if crop:
        h, w = frame.shape[:2]
        top, left, bottom, right = crop
        r0, c0 = round(top * h), round(left * w)
        frame = frame[r0:max(round(bottom * h), r0 + 1), c0:max(round(right * w), c0 + 1)]
    if frame.shape[:2] == (height, width):
        return frame
    shrink = frame.shape[0] > height and frame.shape[1] > width
    return cv2.resize(frame, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
