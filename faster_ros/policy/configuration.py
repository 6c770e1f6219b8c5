"""The frozen, validated configuration of one FASTerVLA policy (FASTer, section 3.2 and A.2).

A :class:`FASTerVLAConfig` fixes the backbone (a Hugging Face vision-language model family and
its sizes, or a local checkpoint directory), the lightweight action expert, the action-code
shape of the FASTerVQ tokenizer it predicts, BAR decoding and the training recipe. It is saved
as ``config.json`` next to the weights. Named presets: ``"debug"`` (unit tests), ``"tiny"`` (the
shipped CPU-trained default) and real-size timing presets (``"paligemma-3b"``,
``"smolvlm-500m"``) used with random weights by the benchmark.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BACKBONES = ("paligemma", "smolvlm")

PRESETS: dict[str, dict[str, Any]] = {
    # A few hundred thousand parameters: unit tests only.
    "debug": dict(
        image_size=16, patch_size=8, vision_width=16, vision_layers=1, vision_heads=2,
        vision_mlp=32, text_width=32, text_layers=1, text_heads=2, text_kv_heads=1,
        text_head_dim=16, text_mlp=64, expert_width=32, expert_layers=2, expert_heads=2,
        expert_kv_heads=1, expert_head_dim=16, expert_mlp=64, codebook_size=16, codebooks=2,
        code_horizon=1, code_dims=5, block_size=5, chunk_size=8, state_dim=3, state_bins=16,
        steps=20, warmup_steps=2, batch_size=4, learning_rate=3e-3, bf16=False,
    ),
    # ~1M parameters: the shipped default, trained on a shared 2-core CPU in ~20 min. A
    # PaliGemma-layout backbone (SigLIP tower on 32x32 frames + projector + Gemma LM) and a
    # Gemma-style expert. The paper's lr 2.5e-5 fine-tunes pretrained weights; from scratch
    # the tiny model needs a larger one.
    "tiny": dict(
        image_size=32, patch_size=8, vision_width=64, vision_layers=2, vision_heads=4,
        vision_mlp=128, text_width=96, text_layers=2, text_heads=4, text_kv_heads=1,
        text_head_dim=24, text_mlp=256, expert_width=96, expert_layers=3, expert_heads=4,
        expert_kv_heads=1, expert_head_dim=24, expert_mlp=256, learning_rate=2e-3,
        weight_decay=1e-4, warmup_steps=100, steps=2000, batch_size=16, bf16=False,
    ),
    # PaliGemma-3B (SigLIP So400m/14 at 224 + Gemma-2B) with a pi0-sized ~300M Gemma expert
    # (pi0's "gemma_300m": width 1024, 18 layers, 8 heads, 1 KV head, mlp 4096). Timing only.
    "paligemma-3b": dict(
        image_size=224, patch_size=14, vision_width=1152, vision_layers=27, vision_heads=16,
        vision_mlp=4304, text_width=2048, text_layers=18, text_heads=8, text_kv_heads=1,
        text_head_dim=256, text_mlp=16384, text_vocab_size=257152, expert_width=1024,
        expert_layers=18, expert_heads=8, expert_kv_heads=1, expert_head_dim=256,
        expert_mlp=4096, codebook_size=4096,
    ),
    # SmolVLM-500M (SigLIP base/16 at 512, pixel-shuffle x4 connector, SmolLM2-360M LM) with a
    # ~60M Llama-style expert (a quarter of the LM's depth, two thirds of its width). Timing only.
    "smolvlm-500m": dict(
        backbone="smolvlm", image_size=512, patch_size=16, vision_width=768, vision_layers=12,
        vision_heads=12, vision_mlp=3072, text_width=960, text_layers=32, text_heads=15,
        text_kv_heads=5, text_head_dim=64, text_mlp=2560, text_vocab_size=49280,
        expert_width=640, expert_layers=8, expert_heads=10, expert_kv_heads=5,
        expert_head_dim=64, expert_mlp=1706, codebook_size=4096, pixel_shuffle=4,
    ),
}


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"FASTerVLAConfig.{name} must be a positive int, got {value!r}")


def _nonneg_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"FASTerVLAConfig.{name} must be an int >= 0, got {value!r}")


def relative_mask(action_dim: int, absolute_dims: Sequence[int] = (),
                  relative: bool = True) -> np.ndarray:
    """(action_dim,) float32 mask of the state-relative action dimensions."""
    mask = np.full(action_dim, 1.0 if relative else 0.0, np.float32)
    mask[list(absolute_dims)] = 0.0
    return mask


def _positive_float(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"FASTerVLAConfig.{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class FASTerVLAConfig:
    """FASTerVLA hyper-parameters, grouped Architecture / Action codes / Inference / Training.

    Sequence layout: context = [camera images (num_cameras x image tokens); instruction; the
    discretised proprioceptive state written as text], encoded once by the backbone; the action
    expert then decodes N = codebooks * code_horizon * code_dims action tokens in
    ceil(N / block_size) blocks (BAR). With ``backbone_path`` set the backbone (and its sizes,
    text tokenizer and vocabulary) come from that local checkpoint; the ``vision_*`` / ``text_*``
    sizes are then unused.
    """

    # --- Architecture: backbone (a transformers VLM family) and the action expert
    backbone: str = "paligemma"
    backbone_path: str = ""
    image_size: int = 64
    patch_size: int = 8
    # Region of each camera frame the model sees, as fractions (top, left, bottom, right) of its
    # height and width, cropped before the resize to image_size x image_size; () = whole frame.
    # Cuts what a fixed camera shows outside the workspace (LeRobot's crop_shape does the same
    # for its diffusion policy): on ALOHA's top camera the table is 62% x 72% of the frame.
    image_crop: tuple[float, ...] = ()
    pixel_shuffle: int = 2  # SmolVLM connector scale factor (image tokens / pixel_shuffle**2)
    vision_width: int = 96
    vision_layers: int = 2
    vision_heads: int = 4
    vision_mlp: int = 192
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 1
    text_head_dim: int = 32
    text_mlp: int = 256
    text_vocab_size: int = 0  # 0: the size of the built-in word-level text vocabulary
    expert_width: int = 128
    expert_layers: int = 3
    expert_heads: int = 4
    expert_kv_heads: int = 1
    expert_head_dim: int = 32
    expert_mlp: int = 384
    rope_theta: float = 10000.0
    num_cameras: int = 1
    cameras: tuple[str, ...] = ()
    state_dim: int = 26
    state_bins: int = 256
    max_text_tokens: int = 32
    # State history (LeRobot's n_obs_steps, as motion): for each lag L in seconds the prompt also
    # holds s_t - s_{t-L}, discretised into state_bins bins over the training range of that
    # motion. Joint-position robots lag their commands (the G1 arms by ~5 steps at 30 Hz, the
    # hands by ~10), so the recent motion tells where the commanded targets already are.
    state_history_s: tuple[float, ...] = ()
    # The prompt holds the state bins (and the motion groups). False: the policy sees only the
    # cameras and the instruction, so it cannot copy the motion the state already shows (the
    # copycat failure of behaviour cloning with proprioception, Wen et al. 2020); a relative
    # policy still adds its actions to the state.
    prompt_state: bool = True
    # Auxiliary chunk regression (0: off): while training, a linear head on the first block's
    # hidden states (which see only the context) regresses the whole chunk in the tokenizer's
    # normalised space, and this weight times its L1 joins the BAR loss. A smooth signal that
    # asks the context to carry what changes the chunk (the cube's position) even where the
    # first code level does not vary with it. Inference decodes codes only; the head is unused.
    chunk_l1_weight: float = 0.0
    # Keypoint image tokens (0: none): a small conv stem on each camera's frame ends in this many
    # feature maps, a spatial softmax turns each into its expected (x, y) in [-1, 1], and every
    # keypoint becomes one more image token for the backbone (Levine et al. 2016; robomimic's
    # low-data visuomotor encoder). Explicit coordinates of a small object the patch tokens blur.
    keypoints: int = 0
    # Object cues (0: none): this many values from an object locator that runs on the camera
    # frame inside the policy (:mod:`faster_ros.policy.locator`; e.g. the cube's x, y, z), each
    # discretised into state_bins bins over its training range and put in the prompt after the
    # state as ``object b1 .. bK ;``. Explicit numbers the policy reads more easily than the
    # few pixels of a small object (the ALOHA policies' first chunk ignored the cube without).
    cues: int = 0
    # Motion prior (0: none): an MLP of this width maps the state and its recent motion to the
    # expected chunk a_{t+k} - s_t (L1 fit on the training windows before the policy), and the
    # action codes then encode the rest: actions = s_t + prior + decode(codes). Needs
    # relative_to_state and state_history_s. A better anchor than s_t for lagging joints.
    prior_hidden: int = 0
    # Actions tokenised relative to the current state (a_{t+k} - s_t, openpi's DeltaActions for
    # joint positions); needs state and actions in the same coordinates (state_dim = action_dim)
    relative_to_state: bool = False
    # With relative_to_state, these action dimensions stay absolute (openpi's delta mask: the
    # ALOHA grippers absolute, the arm joints relative), so a held "closed" command is the same
    # code whatever the blocked finger reads. From the tokenizer's provenance.
    absolute_dims: tuple[int, ...] = ()
    # --- Action codes (must match the FASTerVQ tokenizer)
    action_dim: int = 26
    chunk_size: int = 32
    codebook_size: int = 1024
    codebooks: int = 3
    code_horizon: int = 2
    code_dims: int = 13
    # --- Inference (A.2: top-k 50, temperature 0.8; fixed RoPE spacing +2)
    block_size: int = 13
    inference_spacing: int = 2
    top_k: int = 50
    temperature: float = 0.8
    greedy: bool = False
    mask_invalid: bool = True
    # Residual codebooks decoded (FASTerVQ ``decode(levels=...)``, coarse to fine); 0: all. A
    # small policy that predicts the fine levels no better than chance only adds their noise.
    decode_levels: int = 0
    # --- Training (A.2: AdamW lr 2.5e-5, wd 1e-10, cosine with 1000 warm-up steps, bf16)
    spacing_jitter: int = 2
    learning_rate: float = 2.5e-5
    weight_decay: float = 1e-10
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    steps: int = 30000
    batch_size: int = 32
    bf16: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cameras", tuple(str(c) for c in self.cameras))
        set_(self, "betas", tuple(float(b) for b in self.betas))
        set_(self, "state_history_s", tuple(float(x) for x in self.state_history_s))
        set_(self, "absolute_dims", tuple(int(x) for x in self.absolute_dims))
        set_(self, "image_crop", tuple(float(x) for x in self.image_crop))
        if self.backbone not in BACKBONES:
            raise ValueError(f"FASTerVLAConfig.backbone must be one of {BACKBONES}, got "
                             f"{self.backbone!r}")
        for name in ("image_size", "patch_size", "pixel_shuffle", "vision_width", "vision_layers",
                     "vision_heads", "vision_mlp", "text_width", "text_layers", "text_heads",
                     "text_kv_heads", "text_head_dim", "text_mlp", "expert_width",
                     "expert_layers", "expert_heads", "expert_kv_heads", "expert_head_dim",
                     "expert_mlp", "num_cameras", "state_dim", "state_bins", "max_text_tokens",
                     "action_dim", "chunk_size", "codebook_size", "codebooks", "code_horizon",
                     "code_dims", "block_size", "inference_spacing", "top_k", "warmup_steps",
                     "steps", "batch_size"):
            _positive_int(name, getattr(self, name))
        for name in ("text_vocab_size", "spacing_jitter", "seed", "decode_levels",
                     "prior_hidden", "keypoints", "cues"):
            _nonneg_int(name, getattr(self, name))
        if self.decode_levels > self.codebooks:
            raise ValueError(f"FASTerVLAConfig.decode_levels {self.decode_levels} exceeds the "
                             f"{self.codebooks} codebooks")
        if self.image_size % self.patch_size:
            raise ValueError(f"FASTerVLAConfig.patch_size {self.patch_size} does not divide "
                             f"image_size {self.image_size}")
        if self.image_crop:
            crop = self.image_crop
            if len(crop) != 4 or not (0.0 <= crop[0] < crop[2] <= 1.0
                                      and 0.0 <= crop[1] < crop[3] <= 1.0):
                raise ValueError(f"FASTerVLAConfig.image_crop must be (top, left, bottom, right) "
                                 f"fractions with top < bottom and left < right in [0, 1], got "
                                 f"{crop!r}")
        if not 1 <= self.num_cameras <= 3:
            raise ValueError(f"FASTerVLAConfig.num_cameras must be 1..3, got {self.num_cameras}")
        if self.cameras and len(self.cameras) != self.num_cameras:
            raise ValueError(f"FASTerVLAConfig.cameras names {len(self.cameras)} cameras for "
                             f"num_cameras {self.num_cameras}: {self.cameras!r}")
        for prefix in ("text", "expert"):
            heads, kv = getattr(self, f"{prefix}_heads"), getattr(self, f"{prefix}_kv_heads")
            if heads % kv:
                raise ValueError(f"FASTerVLAConfig.{prefix}_kv_heads {kv} does not divide "
                                 f"{prefix}_heads {heads}")
        if self.expert_head_dim % 2:
            raise ValueError(f"FASTerVLAConfig.expert_head_dim must be even (RoPE), got "
                             f"{self.expert_head_dim}")
        if self.relative_to_state and self.state_dim != self.action_dim:
            raise ValueError(f"FASTerVLAConfig.relative_to_state needs state_dim == action_dim, "
                             f"got {self.state_dim} and {self.action_dim}")
        if self.absolute_dims and not (self.relative_to_state and not self.prior_hidden):
            raise ValueError("FASTerVLAConfig.absolute_dims needs relative_to_state and no "
                             "motion prior")
        bad = [d for d in self.absolute_dims if not 0 <= d < self.action_dim]
        if bad or len(set(self.absolute_dims)) != len(self.absolute_dims):
            raise ValueError(f"FASTerVLAConfig.absolute_dims must be distinct action "
                             f"dimensions in 0..{self.action_dim - 1}, got {self.absolute_dims}")
        if self.block_size > self.tokens_per_chunk:
            raise ValueError(f"FASTerVLAConfig.block_size {self.block_size} exceeds the "
                             f"{self.tokens_per_chunk} tokens of one chunk")
        if self.prior_hidden and not (self.relative_to_state and self.state_history_s):
            raise ValueError("FASTerVLAConfig.prior_hidden needs relative_to_state and "
                             "state_history_s")
        lags = self.state_history_s
        if not all(math.isfinite(x) and x > 0 for x in lags) or list(lags) != sorted(set(lags)):
            raise ValueError(f"FASTerVLAConfig.state_history_s must be increasing positive "
                             f"seconds, got {lags!r}")
        _positive_float("temperature", self.temperature)
        _positive_float("rope_theta", self.rope_theta)
        _positive_float("learning_rate", self.learning_rate)
        _positive_float("grad_clip", self.grad_clip)
        _positive_float("weight_decay", self.weight_decay, allow_zero=True)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"FASTerVLAConfig.min_lr_ratio must be in [0, 1], got "
                             f"{self.min_lr_ratio!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"FASTerVLAConfig.betas must be two numbers in [0, 1), got "
                             f"{self.betas!r}")

    # ------------------------------------------------------------------ derived sizes
    def relative_mask(self) -> np.ndarray:
        """(action_dim,) float32: 1 where the action is relative to the state, 0 where absolute
        (all 0 without relative_to_state). Relative actions are a - s * mask."""
        return relative_mask(self.action_dim, self.absolute_dims, self.relative_to_state)

    @property
    def tokens_per_chunk(self) -> int:
        """N = N_c * C_h * C_a action tokens per chunk."""
        return self.codebooks * self.code_horizon * self.code_dims

    @property
    def action_vocab_size(self) -> int:
        """|C| = codebook_size codes + <BoBlk> + <EoBlk>: the slots appended to the vocabulary."""
        return self.codebook_size + 2

    @property
    def bos_block_id(self) -> int:
        """Action-vocabulary id of <BoBlk> (the codes are 0..codebook_size-1)."""
        return self.codebook_size

    @property
    def eos_block_id(self) -> int:
        """Action-vocabulary id of <EoBlk>."""
        return self.codebook_size + 1

    # ------------------------------------------------------------------ presets and I/O
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> FASTerVLAConfig:
        """A named preset (see ``PRESETS``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown FASTerVLAConfig preset {name!r}; known: "
                             f"{', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_tokenizer(cls, preset: str, vq_config: Any, **overrides: Any) -> FASTerVLAConfig:
        """A preset whose action-code fields come from a FASTerVQ tokenizer's config."""
        codes = dict(
            action_dim=vq_config.action_dim, chunk_size=vq_config.chunk_size,
            codebook_size=vq_config.codebook_size, codebooks=vq_config.codebooks,
            code_horizon=vq_config.code_horizon, code_dims=vq_config.code_dims,
        )
        return cls.preset(preset, **{**codes, **overrides})

    def replace(self, **changes: Any) -> FASTerVLAConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FASTerVLAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"FASTerVLAConfig: unknown field {unknown[0]!r} in saved config")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FASTerVLAConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
