"""Vision-language backbones of FASTerVLA: adapters over Hugging Face ``transformers`` VLMs.

FASTerVLA (section 3.2) keeps the usual VLM layout - vision tower, projector, language model - so
that standard checkpoints load unchanged. An adapter exposes the three pieces the policy needs,
whatever the family:

    embed_images(pixels (B, n_cam, 3, S, S)) -> (B, n_cam * T_img, D)   vision tower, projector
    embed_tokens(ids (B, L))                  -> (B, L, D)               resized embedding table
    encode(embeds (B, P, D), valid (B, P))    -> (B, P, D)               LM last hidden states

Images are encoded one per camera and their features placed before the text embeddings (as
openpi's pi0 does), so no image placeholder tokens are needed and 1 to 3 cameras work with every
family. Families: ``paligemma`` (PaliGemma / PaliGemma 2: SigLIP + linear projector + Gemma) and
``smolvlm`` (SmolVLM / Idefics3: SigLIP + pixel-shuffle connector + Llama). ``build_backbone``
makes one from a :class:`FASTerVLAConfig` with random weights; ``load_backbone`` runs the real
``from_pretrained(local_dir, local_files_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    GemmaConfig,
    Idefics3ForConditionalGeneration,
    LlamaConfig,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PretrainedConfig,
    SiglipVisionConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)
from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

from faster_ros.policy.configuration import FASTerVLAConfig

# model_type of the saved Hugging Face config -> (family, model class)
_FAMILIES: dict[str, tuple[str, type]] = {
    "paligemma": ("paligemma", PaliGemmaForConditionalGeneration),
    "smolvlm": ("smolvlm", SmolVLMForConditionalGeneration),
    "idefics3": ("smolvlm", Idefics3ForConditionalGeneration),
}


class Backbone(nn.Module):
    """A VLM adapter. ``inner`` is the family's base model (``PaliGemmaModel``,
    ``SmolVLMModel``, ``Idefics3Model``): the LM head of the checkpoint is dropped, the policy only
    reads hidden states. Its embedding table is the one resized with the action-code slots."""

    def __init__(self, family: str, inner: nn.Module, hf_config: PretrainedConfig):
        super().__init__()
        self.family = family
        self.inner = inner
        self.hf_config = hf_config

    @property
    def hidden_size(self) -> int:
        return int(self.hf_config.text_config.hidden_size)

    @property
    def image_size(self) -> int:
        return int(self.hf_config.vision_config.image_size)

    @property
    def vocab_size(self) -> int:
        return int(self.embedding.num_embeddings)

    @property
    def embedding(self) -> nn.Embedding:
        return self.inner.get_input_embeddings()

    @property
    def language_model(self) -> nn.Module:
        return self.inner.language_model if self.family == "paligemma" else self.inner.text_model

    def embed_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, n_cam, 3, S, S) pixels in [-1, 1] -> (B, n_cam * T_img, D) image embeddings."""
        b, n = pixels.shape[:2]
        flat = pixels.flatten(0, 1).to(self.embedding.weight.dtype)  # (B * n_cam, 3, S, S)
        if self.family == "paligemma":
            feats = self.inner.get_image_features(flat).pooler_output  # (B * n, T, D)
        else:
            s = flat.shape[-1]
            keep = torch.ones(flat.shape[0], s // self.hf_config.vision_config.patch_size,
                              s // self.hf_config.vision_config.patch_size, dtype=torch.bool,
                              device=flat.device)
            hidden = self.inner.vision_model(pixel_values=flat, patch_attention_mask=keep)
            feats = self.inner.connector(hidden.last_hidden_state)  # (B * n, T, D)
        return feats.reshape(b, n * feats.shape[1], feats.shape[2])  # (B, n * T, D)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) vocabulary ids -> (B, L, D) input embeddings (Gemma's sqrt(D) scale included)."""
        return self.embedding(ids)

    def encode(self, embeds: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the language model once over the context: (B, P, D), valid (B, P) -> (B, P, D)."""
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        out = self.language_model(inputs_embeds=embeds, attention_mask=valid.long(),
                                  position_ids=positions, use_cache=False)
        return out.last_hidden_state

    def resize_vocab(self, size: int) -> None:
        """Grow the embedding table to ``size`` rows (transformers' own resize; new rows drawn
        from the old rows' mean and covariance)."""
        if size != self.vocab_size:
            self.inner.resize_token_embeddings(size, mean_resizing=self.vocab_size > 1)
            self.hf_config.text_config.vocab_size = size

    def config_dict(self) -> dict[str, Any]:
        """The Hugging Face config (with the resized vocabulary) to rebuild this architecture."""
        return self.hf_config.to_dict()


def hf_config_from(cfg: FASTerVLAConfig, vocab_size: int) -> PretrainedConfig:
    """A Hugging Face config of ``cfg.backbone``'s family with ``cfg``'s sizes."""
    if cfg.backbone == "paligemma":
        vision = SiglipVisionConfig(
            hidden_size=cfg.vision_width, intermediate_size=cfg.vision_mlp,
            num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
            image_size=cfg.image_size, patch_size=cfg.patch_size)
        text = GemmaConfig(
            vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=cfg.text_mlp,
            num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
            num_key_value_heads=cfg.text_kv_heads, head_dim=cfg.text_head_dim,
            max_position_embeddings=8192, pad_token_id=0)
        num_image_tokens = (cfg.image_size // cfg.patch_size) ** 2
        return PaliGemmaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                               projection_dim=cfg.text_width, image_token_index=vocab_size - 1,
                               num_image_tokens=num_image_tokens, pad_token_id=0)
    vision = SmolVLMVisionConfig(
        hidden_size=cfg.vision_width, intermediate_size=cfg.vision_mlp,
        num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size, patch_size=cfg.patch_size)
    text = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.text_width, intermediate_size=cfg.text_mlp,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_kv_heads, head_dim=cfg.text_head_dim,
        max_position_embeddings=8192, pad_token_id=0, tie_word_embeddings=False)
    return SmolVLMConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                         scale_factor=cfg.pixel_shuffle, image_token_id=vocab_size - 1,
                         pad_token_id=0)


def _wrap(family: str, full: nn.Module) -> Backbone:
    inner = full.model
    config = full.config
    del full.lm_head
    return Backbone(family, inner, config)


def build_backbone(cfg: FASTerVLAConfig, vocab_size: int) -> Backbone:
    """A backbone of ``cfg.backbone``'s family with ``cfg``'s sizes and random weights."""
    return backbone_from_hf_config(hf_config_from(cfg, vocab_size))


def backbone_from_hf_config(hf_config: PretrainedConfig | dict[str, Any]) -> Backbone:
    """Rebuild a backbone (random weights) from a saved Hugging Face config or its dict."""
    if isinstance(hf_config, dict):
        data = dict(hf_config)
        model_type = data.pop("model_type", None)
        if model_type not in _FAMILIES:
            raise ValueError(f"unsupported backbone model_type {model_type!r}; known: "
                             f"{', '.join(_FAMILIES)}")
        hf_config = AutoConfig.for_model(model_type, **data)
    family, cls = _family(hf_config)
    return _wrap(family, cls(hf_config))


def _family(hf_config: PretrainedConfig) -> tuple[str, type]:
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in _FAMILIES:
        raise ValueError(f"unsupported backbone model_type {model_type!r}; known: "
                         f"{', '.join(_FAMILIES)}")
    return _FAMILIES[model_type]


def load_backbone(local_dir: str | Path, dtype: torch.dtype | None = None) -> Backbone:
    """Load a pretrained VLM checkpoint from a local directory (no hub access), e.g. a
    downloaded ``google/paligemma2-3b-pt-224`` or ``HuggingFaceTB/SmolVLM-500M-Instruct``."""
    local_dir = Path(local_dir)
    if not (local_dir / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in backbone directory {local_dir}")
    hf_config = AutoConfig.from_pretrained(local_dir, local_files_only=True)
    family, cls = _family(hf_config)
    full = cls.from_pretrained(local_dir, local_files_only=True, dtype=dtype)
    return _wrap(family, full)
