"""FASTerVLA policy (FASTer, arXiv 2512.04952, section 3.2). No rclpy here.

    from faster_ros.policy import FASTerVLA
    policy = FASTerVLA.from_pretrained("g1_inspire_vla")      # loads its FASTerVQ tokenizer too
    out = policy.predict_action_chunk(observation)            # PolicyOutput
    out.actions  # (H, D) float32 physical units, None when out.invalid is non-empty
    out.timing   # image_ms, context_ms, block_ms[...], detokenize_ms, total_ms

Modules: configuration (FASTerVLAConfig + presets), backbones (transformers VLM adapters),
processor (prompt + vocabulary), masks (the block-causal mask), expert (action expert),
decoding (KV-cached BAR decoder), modeling (FASTerVLA), data (samples from Episodes), train
(``python -m faster_ros.policy.train``, torchrun-ready), evaluate (held-out error vs hold
baselines), action_tokenizer (a FASTerVQ fitted on state-relative chunks).
"""

from faster_ros.policy.configuration import PRESETS, FASTerVLAConfig
from faster_ros.policy.decoding import BlockDecoder, DecodeResult
from faster_ros.policy.masks import block_causal_mask, num_blocks
from faster_ros.policy.modeling import FASTerVLA, PolicyOutput

__all__ = [
    "PRESETS",
    "BlockDecoder",
    "DecodeResult",
    "FASTerVLA",
    "FASTerVLAConfig",
    "PolicyOutput",
    "block_causal_mask",
    "num_blocks",
]
