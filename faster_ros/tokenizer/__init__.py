"""FASTerVQ action tokenizer (FASTer, arXiv 2512.04952) and the FAST baseline. No rclpy here.

    from faster_ros.tokenizer import FASTerVQ
    tok = FASTerVQ.load("g1_inspire_vq", embodiment="g1_inspire")
    codes = tok.encode(actions)              # (B, H, D) physical -> (B, N_c, C_h, C_a)
    tokens = tok.codes_to_tokens(codes)      # (B, N), codebook-major, horizon before dimension
    actions = tok.decode(tok.tokens_to_codes(tokens))
"""

from faster_ros.tokenizer.configuration import PRESETS, VQConfig
from faster_ros.tokenizer.modeling import (
    EncodeResult,
    FASTerVQ,
    TokenizerLoadError,
    VQOutput,
    check_embodiment,
)
from faster_ros.tokenizer.tokens import codes_to_tokens, tokens_to_codes

__all__ = [
    "PRESETS",
    "EncodeResult",
    "FASTerVQ",
    "TokenizerLoadError",
    "VQConfig",
    "VQOutput",
    "check_embodiment",
    "codes_to_tokens",
    "tokens_to_codes",
]
