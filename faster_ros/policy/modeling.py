"""FASTerVLA: a VLM backbone + lightweight action expert decoding FASTerVQ codes with BAR.

FASTer (arXiv 2512.04952) section 3.2. One observation -> one action chunk:

1. the backbone (:mod:`faster_ros.policy.backbones`) encodes the camera images, the instruction
   and the discretised state (:mod:`faster_ros.policy.processor`) once;
2. its last hidden states, projected to the expert width, are the prefix of the action expert
   (:mod:`faster_ros.policy.expert`), whose KV is computed once;
3. the expert decodes the N = N_c * C_h * C_a action tokens in ceil(N / B) blocks with the
   KV-cached BAR decoder (:mod:`faster_ros.policy.decoding`);
4. the FASTerVQ tokenizer maps the tokens back to codes and the codes to an action chunk in
   physical units (plus the current state for a ``relative_to_state`` policy, whose tokenizer
   encodes a_{t+k} - s_t as openpi's DeltaActions does); the chunk is then clipped to the
   per-dimension range of the training actions (the paper clips to [-1, 1] in its min-max
   normalised action space: the same bound).

Training is teacher forcing with the BAR loss (:meth:`FASTerVLA.forward`); inference is
:meth:`FASTerVLA.predict_action_chunk`. Saved as ``config.json`` + ``backbone_config.json`` +
``model.safetensors`` + the text tokenizer + ``policy.json`` (the action tokenizer reference).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from faster_ros.policy.backbones import (
    Backbone,
    backbone_from_hf_config,
    build_backbone,
    load_backbone,
)
from faster_ros.policy.configuration import FASTerVLAConfig
from faster_ros.policy.decoding import (
    BlockDecoder,
    DecodeResult,
    action_positions,
    block_inputs,
)
from faster_ros.policy.expert import ActionExpert
from faster_ros.policy.lineage import POLICY_FILE
from faster_ros.policy.locator import META as LOCATOR_META
from faster_ros.policy.locator import ObjectLocator, spatial_softmax
from faster_ros.policy.masks import block_causal_mask
from faster_ros.policy.processor import (
    PromptProcessor,
    build_word_tokenizer,
    find_camera,
    numeral_embeddings,
)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BACKBONE_CONFIG_FILE = "backbone_config.json"


class MotionPrior(nn.Module):
    """State (B, S) and past states (B, K, S) -> expected chunk a_{t+k} - s_t (B, H, D).

    Features: the state and its motion s_t - s_{t-L} per lag, standardised with the training
    mean / std (buffers); a 2-hidden-layer GELU MLP of width ``cfg.prior_hidden``."""

    def __init__(self, cfg: FASTerVLAConfig):
        super().__init__()
        n_in = cfg.state_dim * (1 + len(cfg.state_history_s))
        self.shape = (cfg.chunk_size, cfg.action_dim)
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))
        w = cfg.prior_hidden
        self.net = nn.Sequential(nn.Linear(n_in, w), nn.GELU(), nn.Linear(w, w), nn.GELU(),
                                 nn.Linear(w, self.shape[0] * self.shape[1]))

    @staticmethod
    def features(state: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return torch.cat([state, (state[:, None] - history).flatten(1)], dim=1)

    def forward(self, state: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        x = (self.features(state, history) - self.mean) / self.std
        return self.net(x).view(-1, *self.shape)


class KeypointTokens(nn.Module):
    """Frames (N, 3, S, S) in [-1, 1] -> (N, K, D) keypoint tokens: conv stem, spatial softmax
    (learned temperature) to each map's expected (x, y), a shared linear map of the
    coordinates plus a learned embedding per keypoint."""

    def __init__(self, keypoints: int, width: int, channels: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, keypoints, 1))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.coords = nn.Linear(2, width)
        self.identity = nn.Parameter(torch.randn(keypoints, width) * 0.02)

    def positions(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, K, 2) expected (x, y) of each keypoint map, in [-1, 1]."""
        return spatial_softmax(self.stem(pixels), self.log_temperature)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.coords(self.positions(pixels)) + self.identity


@dataclass
class PolicyOutput:
    """One predicted chunk.

    actions  (H, D) float32 in physical units (rad, hand units, m/s), or None when the
             prediction is invalid (then nothing was decoded; the caller rejects the chunk)
    codes    (N_c, C_h, C_a) int64 FASTerVQ codes, or None when invalid
    tokens   (N,) int64 action-vocabulary ids as predicted (codes 0..K-1, K = <BoBlk>,
             K + 1 = <EoBlk>), always present
    invalid  reasons, one per invalid token (empty when valid)
    timing   image_ms, context_ms, block_ms (list, one per block), detokenize_ms, total_ms
    passes   expert forward passes over action slots (ceil(N / B))
    """

    actions: np.ndarray | None
    codes: np.ndarray | None
    tokens: np.ndarray
    invalid: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    passes: int = 0

    @property
    def ok(self) -> bool:
        return not self.invalid

    @property
    def num_invalid(self) -> int:
        return len(self.invalid)


class FASTerVLA(nn.Module):
    """FASTerVLA policy (FASTer section 3.2): VLM backbone, action expert, BAR decoding."""

    def __init__(self, config: FASTerVLAConfig, backbone: Backbone, processor: PromptProcessor,
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
                 action_tokenizer: Any = None, tokenizer_ref: str = "",
                 locator: ObjectLocator | None = None):
        super().__init__()
        self.config = config
        if bool(config.cues) != (locator is not None) or (
                locator is not None and len(locator.cfg.names) != config.cues):
            raise ValueError(f"FASTerVLA: config.cues is {config.cues}, locator outputs "
                             f"{None if locator is None else len(locator.cfg.names)}: they must "
                             f"match (no locator without cues)")
        # the object locator (frozen: trained on its own labels, never by the action loss)
        self.locator = locator
        if locator is not None:
            locator.requires_grad_(False)
        self.backbone = backbone
        self.processor = processor
        backbone.resize_vocab(max(backbone.vocab_size, processor.vocab_size))
        activation = "gelu" if backbone.family == "paligemma" else "silu"
        self.expert = ActionExpert(config, backbone.hidden_size,
                                   backbone.embedding.embedding_dim, activation)
        d = config.action_dim
        low = np.full(d, -np.inf) if action_low is None else np.asarray(action_low)
        high = np.full(d, np.inf) if action_high is None else np.asarray(action_high)
        self.register_buffer("action_low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(high, dtype=torch.float32))
        self.decoder = BlockDecoder(self.expert, self.embed_actions)
        self.prior = MotionPrior(config) if config.prior_hidden else None
        self.chunk_head = (nn.Linear(config.expert_width, config.chunk_size * d)
                           if config.chunk_l1_weight > 0 else None)
        self.keypoint_tokens = (KeypointTokens(config.keypoints, backbone.hidden_size)
                                if config.keypoints else None)
        self.action_tokenizer = action_tokenizer
        self.tokenizer_ref = tokenizer_ref
        self.provenance: dict[str, Any] = {}
        self._generator: torch.Generator | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "action_tokenizer":  # kept out of the module tree: saved by reference only
            object.__setattr__(self, "_action_tokenizer", (value,))
            return
        super().__setattr__(name, value)

    @property
    def action_tokenizer(self) -> Any:
        """The FASTerVQ tokenizer (not a submodule: not in this model's weights)."""
        return self.__dict__.get("_action_tokenizer", (None,))[0]

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: FASTerVLAConfig, *, state_low: np.ndarray, state_high: np.ndarray,
              action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
              history_span: np.ndarray | None = None, words: Sequence[str] = (),
              action_tokenizer: Any = None, tokenizer_ref: str = "",
              locator: ObjectLocator | None = None, cue_low: np.ndarray | None = None,
              cue_high: np.ndarray | None = None) -> FASTerVLA:
        """A new policy. With ``config.backbone_path`` the backbone and its text tokenizer come
        from that local checkpoint (pretrained weights); otherwise both are built from the
        config with random weights and a word-level vocabulary (``words`` adds words to it)."""
        if config.backbone_path:
            backbone = load_backbone(config.backbone_path)
            processor = PromptProcessor.from_backbone_dir(
                config.backbone_path, config, state_low, state_high, backbone.image_size,
                history_span, cue_low, cue_high)
        else:
            processor = PromptProcessor(config, build_word_tokenizer(config, words), state_low,
                                        state_high, history_span=history_span, cue_low=cue_low,
                                        cue_high=cue_high)
            backbone = build_backbone(config, max(config.text_vocab_size,
                                                  processor.vocab_size))
            weight = backbone.embedding.weight
            with torch.no_grad():
                weight[processor.state_bin_ids()] = numeral_embeddings(
                    config.state_bins, weight.shape[1], float(weight.std()))
        return cls(config, backbone, processor, action_low, action_high, action_tokenizer,
                   tokenizer_ref, locator)

    @property
    def device(self) -> torch.device:
        return self.action_low.device

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        inner = self.backbone.inner
        vision = count(inner.vision_tower if self.backbone.family == "paligemma"
                       else inner.vision_model)
        return dict(total=count(self), backbone=count(self.backbone), vision=vision,
                    embedding=self.backbone.embedding.weight.numel(), expert=count(self.expert))

    # ------------------------------------------------------------------ shared pieces
    def embed_actions(self, ids: torch.Tensor) -> torch.Tensor:
        """Action-vocabulary ids (B, L) -> expert-width inputs (B, L, E), through the
        backbone's resized embedding table."""
        emb = self.backbone.embed_tokens(ids + self.processor.action_offset)
        return self.expert.token_proj(emb.to(self.expert.token_proj.weight.dtype))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, n_cam, 3, S, S) -> (B, T_img, D) backbone image embeddings (the keypoint tokens
        of every camera after its patch tokens, when the config has keypoints)."""
        image = self.backbone.embed_images(pixels)
        if self.keypoint_tokens is None:
            return image
        b = pixels.shape[0]
        points = self.keypoint_tokens(pixels.flatten(0, 1).to(
            self.keypoint_tokens.coords.weight.dtype))  # (B * n_cam, K, D)
        return torch.cat([image, points.reshape(b, -1, points.shape[-1]).to(image.dtype)], 1)

    def encode_context(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                       text_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone pass over [images; prompt text] -> expert-width context (B, P, E) and its
        valid mask (B, P)."""
        text = self.backbone.embed_tokens(input_ids)
        embeds = torch.cat([image_embeds.to(text.dtype), text], dim=1)  # (B, P, D)
        valid = torch.cat([text_valid.new_ones(image_embeds.shape[:2]), text_valid], dim=1)
        hidden = self.backbone.encode(embeds, valid)
        return self.expert.context_proj(hidden.to(self.expert.context_proj.weight.dtype)), valid

    def teacher_forced_logits(self, context: torch.Tensor, valid: torch.Tensor,
                              tokens: torch.Tensor, block_size: int, *,
                              spacing: int | None = None,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """One uncached expert pass over [context; block inputs of ``tokens`` (B, N)] under the
        block-causal mask -> logits (B, N, |C|). ``spacing=None``: spacing augmentation."""
        return self.expert.logits(self.teacher_forced_hidden(
            context, valid, tokens, block_size, spacing=spacing, generator=generator))

    def teacher_forced_hidden(self, context: torch.Tensor, valid: torch.Tensor,
                              tokens: torch.Tensor, block_size: int, *,
                              spacing: int | None = None,
                              generator: torch.Generator | None = None) -> torch.Tensor:
        """The expert's hidden states (B, N, E) at the action positions of that pass."""
        cfg = self.config
        b, p, _ = context.shape
        n = tokens.shape[1]
        inputs = block_inputs(tokens, block_size, cfg.bos_block_id)
        x = torch.cat([context, self.embed_actions(inputs)], dim=1)  # (B, P + N, E)
        ctx_pos = (valid.long().cumsum(-1) - 1).clamp(min=0)
        act_pos = action_positions(valid.sum(-1), n, spacing=spacing,
                                   jitter=cfg.spacing_jitter, generator=generator)
        keys = torch.cat([valid, valid.new_ones(b, n)], dim=1)
        mask = block_causal_mask(p, n, block_size, device=x.device)[None, None] & \
            keys[:, None, None, :]
        hidden = self.expert(x, torch.cat([ctx_pos, act_pos], dim=1), mask)
        return hidden[:, p:]

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Teacher forcing with the BAR loss (eq. 3), spacing augmentation on.

        batch: pixels (B, n_cam, 3, S, S) float in [-1, 1], input_ids (B, L) int64,
        text_valid (B, L) bool, tokens (B, N) int64 action codes in policy order."""
        context, valid = self.encode_context(self.encode_images(batch["pixels"]),
                                             batch["input_ids"], batch["text_valid"])
        tokens = batch["tokens"]
        cfg = self.config
        hidden = self.teacher_forced_hidden(context, valid, tokens, cfg.block_size)
        logits = self.expert.logits(hidden)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        with torch.no_grad():
            correct = (logits.argmax(-1) == tokens).float()
            per_level = correct.view(correct.shape[0], cfg.codebooks, -1).mean((0, 2))
        metrics = {"bar_loss": float(loss.detach()), "token_acc": float(correct.mean())}
        metrics.update({f"acc_level{q}": float(a) for q, a in enumerate(per_level)})
        if self.chunk_head is not None:
            if "chunk" not in batch:
                raise KeyError("chunk_l1_weight > 0 needs the batch's normalised chunk "
                               "('chunk', (B, H, D)): PolicyDataset(chunk_targets=True)")
            chunk_l1 = (self._regress_chunk(hidden) - batch["chunk"]).abs().mean()
            loss = loss + cfg.chunk_l1_weight * chunk_l1
            metrics["chunk_l1"] = float(chunk_l1.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _regress_chunk(self, hidden: torch.Tensor) -> torch.Tensor:
        """Expert hidden states (B, N >= block, E) -> the chunk head's (B, H, D) normalised
        chunk, from the first block's states (they see the context only)."""
        cfg = self.config
        first = hidden[:, : cfg.block_size].mean(1)
        pred = self.chunk_head(first.to(self.chunk_head.weight.dtype))
        return pred.float().view(-1, cfg.chunk_size, cfg.action_dim)

    # ------------------------------------------------------------------ inference
    @property
    def action_spec(self) -> tuple[int, int]:
        """(action_dim, chunk_size) of the chunks this policy outputs."""
        return self.config.action_dim, self.config.chunk_size

    def set_decoding(self, *, greedy: bool | None = None, top_k: int | None = None,
                     temperature: float | None = None, block_size: int | None = None,
                     decode_levels: int | None = None) -> None:
        """Change the inference settings (validated like the config)."""
        changes = dict(greedy=greedy, top_k=top_k, temperature=temperature,
                       block_size=block_size, decode_levels=decode_levels)
        self.config = self.config.replace(**{k: v for k, v in changes.items() if v is not None})
        self.expert.cfg = self.config

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: re-seed the sampler (no other state is kept between calls)."""
        self._generator = None
        if seed is not None:
            self._generator = torch.Generator(self.device).manual_seed(seed)

    @torch.no_grad()
    def decode_batch(self, pixels: torch.Tensor, input_ids: torch.Tensor,
                     text_valid: torch.Tensor, *, block_size: int | None = None,
                     greedy: bool | None = None, mask_invalid: bool | None = None,
                     timing: dict[str, Any] | None = None) -> DecodeResult:
        """Batched decoding of action tokens; fills ``timing`` (image_ms, context_ms)."""
        cfg = self.config
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        t0 = time.perf_counter()
        images = self.encode_images(pixels)
        sync()
        t1 = time.perf_counter()
        context, valid = self.encode_context(images, input_ids, text_valid)
        sync()
        t2 = time.perf_counter()
        valid_codes = getattr(getattr(self.action_tokenizer, "config", None), "codebook_size",
                              None)
        result = self.decoder.decode(
            context, valid, cfg.tokens_per_chunk, block_size or cfg.block_size,
            spacing=cfg.inference_spacing, greedy=cfg.greedy if greedy is None else greedy,
            top_k=cfg.top_k, temperature=cfg.temperature,
            mask_invalid=cfg.mask_invalid if mask_invalid is None else mask_invalid,
            valid_codes=valid_codes, generator=self._generator)
        check = getattr(self.action_tokenizer, "invalid_reasons", None)
        if check is not None:  # e.g. FAST: token lists that do not decode to a chunk
            for reasons, extra in zip(result.invalid, check(result.tokens)):
                if not reasons:
                    reasons.extend(extra)
        if timing is not None:
            timing["image_ms"] = (t1 - t0) * 1e3
            timing["context_ms"] = (t2 - t1) * 1e3 + result.prefix_ms
            timing["block_ms"] = list(result.block_ms)
        return result

    @torch.no_grad()
    def anchor(self, state: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """What the decoded codes are added to, (B, H, D): zeros for absolute actions, the
        state s_t (B, S) with ``relative_to_state``, plus the motion prior's chunk when the
        policy has one (then ``history`` (B, K, S), the past states, is needed)."""
        cfg = self.config
        state = np.asarray(state, dtype=np.float32)
        out = np.zeros((len(state), cfg.chunk_size, cfg.action_dim), np.float32)
        if cfg.relative_to_state:
            out += state[:, None] * cfg.relative_mask()
        if self.prior is not None:
            if history is None:
                raise ValueError("this policy's motion prior needs the state history")
            # motion beyond the training span (the prompt's bins clip it too) is clipped: the
            # MLP must not extrapolate from a jump it never saw (a reset, a replayed bag looping)
            span = self.processor.history_span.astype(np.float32)
            motion = np.clip(state[:, None] - np.asarray(history, np.float32), -span, span)
            as_t = lambda x: torch.as_tensor(x, device=self.device,  # noqa: E731
                                             dtype=self.prior.mean.dtype)
            out += self.prior(as_t(state), as_t(state[:, None] - motion)).float().cpu().numpy()
        return out

    def tokens_to_actions(self, tokens: torch.Tensor, state: np.ndarray | None = None,
                          history: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Valid tokens (B, N) -> codes (B, N_c, C_h, C_a) and clipped physical actions
        (B, H, D); with ``relative_to_state`` the :meth:`anchor` of ``state`` (B, S) (and of
        ``history`` (B, K, S) for a motion prior) is added back."""
        if self.action_tokenizer is None:
            raise RuntimeError("FASTerVLA has no action tokenizer: pass one to from_pretrained")
        tok = self.action_tokenizer
        codes = tok.tokens_to_codes(tokens.cpu())
        levels = self.config.decode_levels or None  # 0: every codebook
        actions = self._physical(tok.decode(codes, levels=levels).float(), state, history)
        return codes.numpy().astype(np.int64), actions.numpy().astype(np.float32)

    def _physical(self, actions: torch.Tensor, state: np.ndarray | None,
                  history: np.ndarray | None) -> torch.Tensor:
        """Decoded (B, H, D) CPU actions -> physical: plus the :meth:`anchor` with
        ``relative_to_state``, clipped to the action limits."""
        if self.config.relative_to_state:
            if state is None:
                raise ValueError("relative_to_state: the current state is needed to decode")
            actions = actions + torch.as_tensor(self.anchor(state, history))
        return torch.maximum(torch.minimum(actions, self.action_high.cpu()),
                             self.action_low.cpu())

    def prepare(self, observation: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An observation (``.images`` camera -> (H, W, 3) uint8, ``.state`` (S,),
        ``.instruction``, and ``.state_history`` (K, S) for a policy with
        ``config.state_history_s``) -> pixels (1, n_cam, 3, S, S), input_ids (1, L),
        text_valid (1, L)."""
        proc = self.processor
        pixels = proc.images(proc.select_cameras(observation.images))[None]
        instruction = getattr(observation, "instruction", "") or self.provenance.get(
            "instruction", "")
        history = getattr(observation, "state_history", None)
        ids, valid = proc.pad([proc.prompt_ids(instruction, np.asarray(observation.state),
                                               history=history,
                                               cues=self.locate(observation.images))])
        dev = self.device
        return pixels.to(dev), ids.to(dev), valid.to(dev)

    def locate(self, images: Any) -> np.ndarray | None:
        """The object locator's (C,) estimate from its camera's frame in ``images`` (camera ->
        (H, W, 3) uint8); None for a policy without cues."""
        if self.locator is None:
            return None
        key = find_camera(images, self.locator.cfg.camera)
        if key is None:
            raise ValueError(f"observation lacks camera {self.locator.cfg.camera!r}, which the "
                             f"policy's object locator reads (got {sorted(images)})")
        return self.locator.locate([images[key]])[0]

    @torch.no_grad()
    def regressed_chunk(self, observation: Any) -> np.ndarray:
        """The auxiliary chunk head's own (H, D) physical chunk for ``observation``: a probe of
        what the context carries (never used to act). Needs ``chunk_l1_weight`` > 0."""
        if self.chunk_head is None:
            raise ValueError("this policy has no chunk head (trained without --chunk-l1)")
        cfg = self.config
        pixels, ids, valid = self.prepare(observation)
        context, cvalid = self.encode_context(self.encode_images(pixels), ids, valid)
        bos_only = torch.zeros(1, cfg.block_size, dtype=torch.long, device=self.device)
        hidden = self.teacher_forced_hidden(context, cvalid, bos_only, cfg.block_size, spacing=1)
        chunk = self.action_tokenizer.normalizer.denormalize(self._regress_chunk(hidden).cpu())
        history = getattr(observation, "state_history", None)
        return self._physical(chunk, np.asarray(observation.state)[None],
                              None if history is None else history[None])[0].numpy()

    @torch.no_grad()
    def predict_action_chunk(self, observation: Any, *, greedy: bool | None = None,
                             block_size: int | None = None) -> PolicyOutput:
        """Observation -> :class:`PolicyOutput` (one chunk, denormalised, with timing).

        ``observation``: a :class:`faster_ros.observation.Observation` or anything with
        ``images`` (camera name -> (H, W, 3) uint8 RGB, any size: resized here), ``state``
        (S,) and ``instruction`` (empty: the training instruction). ``greedy`` / ``block_size``
        override the config (``block_size=1``: token-wise AR)."""
        start = time.perf_counter()
        timing: dict[str, Any] = {}
        result = self.decode_batch(*self.prepare(observation), block_size=block_size,
                                   greedy=greedy, timing=timing)
        t0 = time.perf_counter()
        tokens = result.tokens[0].cpu()
        invalid = result.invalid[0]
        codes = actions = None
        if not invalid:
            state = np.asarray(observation.state, dtype=np.float64)[None]
            history = getattr(observation, "state_history", None)
            history = None if history is None else np.asarray(history)[None]
            codes_b, actions_b = self.tokens_to_actions(tokens[None], state, history)
            codes, actions = codes_b[0], actions_b[0]
        end = time.perf_counter()
        timing["detokenize_ms"] = (end - t0) * 1e3
        timing["total_ms"] = (end - start) * 1e3
        return PolicyOutput(actions, codes, tokens.numpy(), list(invalid), timing,
                            result.passes)

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, backbone_config.json, model.safetensors, the text tokenizer and
        policy.json (action tokenizer reference + provenance) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory / CONFIG_FILE)
        (directory / BACKBONE_CONFIG_FILE).write_text(
            json.dumps(self.backbone.config_dict(), indent=2, default=str) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE, metadata={"format": "pt"})
        self.processor.save(directory)
        if self.locator is not None:  # its weights are in model.safetensors (locator.*)
            (directory / LOCATOR_META).write_text(
                json.dumps(dict(config=asdict(self.locator.cfg)), indent=2) + "\n")
        meta = dict(action_tokenizer=self.tokenizer_ref, family=self.backbone.family,
                    provenance=self.provenance)
        (directory / POLICY_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, action_tokenizer: Any = None,
                        tokenizer: str | os.PathLike | None = None,
                        device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> FASTerVLA:
        """Load a saved policy (a directory or a shipped model name under ``models/``).

        The FASTerVQ tokenizer is ``action_tokenizer`` (an object), else loaded from
        ``tokenizer`` (a directory or shipped name), else from the reference saved with the
        policy (``policy.json``)."""
        from faster_ros.paths import model_path

        directory = model_path(directory)
        if action_tokenizer is None and tokenizer:
            action_tokenizer = load_action_tokenizer(str(tokenizer), Path.cwd())
        config = FASTerVLAConfig.load(directory / CONFIG_FILE)
        meta = json.loads((directory / POLICY_FILE).read_text())
        processor = PromptProcessor.load(directory, config)
        hf = json.loads((directory / BACKBONE_CONFIG_FILE).read_text())
        locator = ObjectLocator(ObjectLocator.config_from(directory)) if config.cues else None
        model = cls(config, backbone_from_hf_config(hf), processor,
                    tokenizer_ref=meta.get("action_tokenizer", ""), locator=locator)
        model.load_state_dict(load_file(directory / WEIGHTS_FILE), strict=True)
        model.provenance = meta.get("provenance", {})
        if action_tokenizer is None and model.tokenizer_ref:
            action_tokenizer = load_action_tokenizer(model.tokenizer_ref, directory)
        if action_tokenizer is not None:
            check_tokenizer(config, action_tokenizer)
        model.action_tokenizer = action_tokenizer
        model.to(device=device, dtype=dtype)
        return model.eval()


def check_tokenizer(config: FASTerVLAConfig, tokenizer: Any) -> None:
    """Refuse a tokenizer whose codes this policy was not trained on (code shape, codebook
    size, absolute vs state-relative actions): decoding with it would give wrong actions."""
    tc = tokenizer.config
    mine = (config.codebooks, config.code_horizon, config.code_dims, config.codebook_size,
            config.chunk_size, config.action_dim)
    theirs = tuple(getattr(tc, k, None) for k in ("codebooks", "code_horizon", "code_dims",
                                                  "codebook_size", "chunk_size", "action_dim"))
    if None not in theirs and mine != theirs:
        raise ValueError(f"action tokenizer (N_c, C_h, C_a, K, H, D) = {theirs} does not match "
                         f"the policy's {mine}")
    relative = bool((getattr(tc, "provenance", None) or {}).get("relative_to_state", False))
    if hasattr(tc, "provenance") and relative != config.relative_to_state:
        kind = lambda r: "state-relative" if r else "absolute"  # noqa: E731
        raise ValueError(f"action tokenizer encodes {kind(relative)} actions, the policy was "
                         f"trained on {kind(config.relative_to_state)} ones")
    absolute = tuple((getattr(tc, "provenance", None) or {}).get("absolute_dims", ()))
    if hasattr(tc, "provenance") and absolute != config.absolute_dims:
        raise ValueError(f"action tokenizer keeps action dimensions {list(absolute)} absolute, "
                         f"the policy was trained with {list(config.absolute_dims)}")


def open_action_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """A saved action tokenizer (a directory or a shipped model name): a FASTerVQ, or a
    baseline codec (binning, FAST: :mod:`faster_ros.policy.action_codecs`) by its codec.json."""
    from faster_ros.paths import model_path
    from faster_ros.policy.action_codecs import is_codec_dir, load_action_codec
    from faster_ros.tokenizer import FASTerVQ

    root = model_path(name_or_path)
    return load_action_codec(root) if is_codec_dir(root) else FASTerVQ.load(root)


def load_action_tokenizer(ref: str, base: Path) -> Any:
    """Resolve a tokenizer reference: a shipped model name, or a path relative to ``base``."""
    candidate = base / ref
    return open_action_tokenizer(candidate if candidate.is_dir() else ref)
