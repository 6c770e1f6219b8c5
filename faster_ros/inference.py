"""What the live policy node and offline replay share: loading a policy for inference and the
checks a predicted chunk must pass before it is published. No rclpy here, so that
``faster-ros replay`` runs exactly this code too."""

from __future__ import annotations

import numpy as np

from faster_ros.paths import model_path
from faster_ros.scripted_policy import BUILTIN_PREFIX, load_builtin


def load_policy(model: str, tokenizer: str, device: str, deterministic: bool, emb):
    """Load a FASTerVLA checkpoint directory (or shipped model name) for inference;
    ``builtin:wave`` is the scripted bring-up policy (faster_ros.scripted_policy)."""
    if model.startswith(BUILTIN_PREFIX):
        return load_builtin(model, emb)
    from faster_ros.policy import FASTerVLA

    path = model_path(model)
    kwargs = {"device": device}
    if tokenizer:
        kwargs["tokenizer"] = str(model_path(tokenizer))
    policy = FASTerVLA.from_pretrained(path, **kwargs)
    policy.set_decoding(greedy=deterministic)
    return policy


def check_policy_matches(policy, emb) -> None:
    """A model trained for another robot must not drive this one."""
    cfg = getattr(policy, "action_spec", None)
    if cfg is None:
        return
    dim, horizon = cfg
    if dim != emb.action_dim or horizon != emb.tokenizer.chunk_size:
        raise ValueError(
            f"model outputs chunks of {horizon} x {dim}, embodiment {emb.name} needs "
            f"{emb.tokenizer.chunk_size} x {emb.action_dim}"
        )


def state_history_of(policy) -> tuple[float, ...]:
    """The state-history lags (s) a policy conditions on (``()`` for none, e.g. scripted
    policies): the observation assembler must provide the state that long before each
    observation."""
    return tuple(getattr(getattr(policy, "config", None), "state_history_s", ()) or ())


def chunk_problem(out, emb) -> str:
    """Why a policy output must not be published ("" when it may): invalid tokens, a wrong
    shape or non-finite values."""
    if out.invalid:
        return f"invalid tokens predicted ({len(out.invalid)}): {out.invalid[0]}"
    actions = np.asarray(out.actions, dtype=np.float64)
    if actions.shape != (emb.tokenizer.chunk_size, emb.action_dim):
        return f"policy returned actions of shape {actions.shape}"
    if not np.isfinite(actions).all():
        return "policy returned non-finite actions"
    return ""
