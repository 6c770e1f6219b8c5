"""TAAE: FASTer's Transformer Action AutoEncoder (section 3.1), encoder and decoder.

Convolutions model local structure and downsample time; transformer layers give the global
receptive field. The encoder maps patches (B, m, n, h*d) to a latent (B, C_h, C_a, latent_dim);
the decoder mirrors it. Time is downsampled m -> C_h by a strided convolution; the n dimension
groups are mapped to the C_a latent slots by a learned linear token mixing (FASTer gives C_a = DoF
per embodiment, Table 4, so the latent is laid out as C_h x C_a whatever n is).

Encoder (per chunk)::

    patches (m, n, h*d) -> Linear -> +group/time embeddings -> Transformer over the m*n tokens
      -> per-group Conv1d over time (local) -> strided (kernel = stride) conv m -> C_h
      -> token mixing n -> C_a -> Transformer over the C_h*C_a tokens -> Linear -> latent

Decoder: latent -> Linear -> Transformer (C_h*C_a) -> mixing C_a -> n -> transposed conv
C_h -> m -> Conv1d -> Transformer (m*n) -> Linear -> patches. The kernel = stride (de)convolutions
are written as Linear layers on regrouped time steps (same maps, fewer kernels at batch 1).

With ``linear_skip`` (not in the paper) both also have a linear path, patches <-> latent,
initialised from the principal components of the training chunks while the TAAE outputs start
at zero: training starts from the best linear autoencoder of that latent size and the TAAE learns
the non-linear remainder (a small CPU budget cannot train a precise TAAE from scratch).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from faster_ros.tokenizer.configuration import VQConfig


def _transformer(cfg: VQConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d_model=cfg.width, nhead=cfg.heads, dim_feedforward=cfg.ff_mult * cfg.width,
        dropout=0.0, activation="gelu", batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)


class ConvBlock(nn.Module):
    """Residual Conv1d over time, shared by all groups: x (B*n, W, T) -> same shape."""

    def __init__(self, width: int, kernel: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, width)
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.act(self.norm(x)))


class TokenMix(nn.Module):
    """Linear map across the token axis of one latent row: (B, T, n_in, W) -> (B, T, n_out, W)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("oi,btiw->btow", self.weight, x)


def _conv_to_linear(state: dict, key: str, transposed: bool) -> None:
    """Convert a checkpoint written when ``down`` / ``up`` were Conv1d / ConvTranspose1d
    (kernel = stride = s) into the Linear layout used now; the maps are identical."""
    weight = state.get(key + "weight")
    if weight is None or weight.ndim != 3:
        return
    if transposed:  # (W_in, W_out, s) -> (s * W_out, W_in); output index s_idx * W + o
        state[key + "weight"] = rearrange(weight, "i o s -> (s o) i").contiguous()
        state[key + "bias"] = state[key + "bias"].repeat(weight.shape[2])
    else:  # (W_out, W_in, s) -> (W_out, s * W_in); input index s_idx * W + i
        state[key + "weight"] = rearrange(weight, "o i s -> o (s i)").contiguous()


class LinearSkip(nn.Module):
    """Linear map between flattened patches and the flattened latent: (B, *in_shape) ->
    (B, *out_shape); set from PCA by :func:`pca_init`."""

    def __init__(self, n_in: int, n_out: int, out_shape: tuple[int, ...]):
        super().__init__()
        self.out_shape = out_shape
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1)).reshape(x.shape[0], *self.out_shape)


@torch.no_grad()
def pca_init(encoder: TAAEEncoder, decoder: TAAEDecoder, patches: Tensor,
             weights: Tensor | None = None) -> dict[str, float]:
    """Set both skips to the PCA autoencoder of ``patches`` (N, m, n, p), scaled so latent
    values have unit RMS over the training set, and zero the TAAE output layers.

    ``weights`` (m, n, p) > 0 weight the entries before the PCA (physical units per normalised
    unit): the components and the quantiser's Euclidean distance then follow the error in
    physical units, which is what VRR measures.

    Latent (t, a, c) holds principal component c * C_h * C_a + t * C_a + a."""
    w = (torch.ones(patches.shape[1:]) if weights is None else weights).flatten().double()
    flat = patches.flatten(1).double() * w
    mean = flat.mean(0)
    _, sing, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    k = encoder.skip.linear.out_features
    if k > vh.shape[0]:
        raise ValueError(f"linear_skip needs {k} principal components, the data gives "
                         f"{vh.shape[0]} (use more training chunks or a smaller latent)")
    # component j -> latent slot j % S, channel j // S (S = C_h * C_a): every slot gets the same
    # mix of large and small components, so the codebook shared by all slots fits them all
    slots = encoder.skip.out_shape[0] * encoder.skip.out_shape[1]
    order = torch.arange(k).reshape(k // slots, slots).T.reshape(-1)  # latent j <- comp order[j]
    comps = vh[:k][order]  # (k, m*n*p)
    std = sing[:k][order] / (len(flat) - 1) ** 0.5
    scale = 1.0 / float(std.pow(2).mean().sqrt())  # latent RMS 1
    encoder.skip.linear.weight.copy_(comps * w * scale)
    encoder.skip.linear.bias.copy_(-(comps @ mean) * scale)
    decoder.skip.linear.weight.copy_(comps.T / w[:, None] / scale)
    decoder.skip.linear.bias.copy_(mean / w)
    for layer in (encoder.proj, decoder.head):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    explained = float(sing[:k].pow(2).sum() / sing.pow(2).sum())
    return {"pca_components": k, "pca_explained_variance": explained}


class TAAEEncoder(nn.Module):
    """FASTer TAAE encoder: patches (B, m, n, h*d) -> latent z (B, C_h, C_a, latent_dim)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        m, n, w = cfg.num_time_patches, cfg.num_groups, cfg.width
        self.n = n
        self.embed = nn.Linear(cfg.patch_size, w)
        self.pos = nn.Parameter(torch.zeros(1, m, n, w))
        self.global_in = _transformer(cfg, cfg.enc_layers)
        self.local = ConvBlock(w, cfg.conv_kernel)
        self.stride = m // cfg.code_horizon
        self.down = nn.Linear(self.stride * w, w)  # = Conv1d(kernel = stride = m / C_h)
        self.mix = TokenMix(n, cfg.code_dims)
        self.latent_pos = nn.Parameter(torch.zeros(1, cfg.code_horizon, cfg.code_dims, w))
        self.global_out = _transformer(cfg, max(1, cfg.enc_layers // 2))
        self.norm = nn.LayerNorm(w)
        self.proj = nn.Linear(w, cfg.latent_dim)
        latent = (cfg.code_horizon, cfg.code_dims, cfg.latent_dim)
        self.skip = (LinearSkip(m * n * cfg.patch_size, latent[0] * latent[1] * latent[2], latent)
                     if cfg.linear_skip else None)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.latent_pos, std=0.02)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        _conv_to_linear(state, prefix + "down.", transposed=False)
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def forward(self, patches: Tensor) -> Tensor:
        b, m, n, _ = patches.shape
        x = self.embed(patches) + self.pos  # (B, m, n, W)
        x = self.global_in(rearrange(x, "b m n w -> b (m n) w"))
        x = self.local(rearrange(x, "b (m n) w -> (b n) w m", n=n))  # (B*n, W, m)
        x = self.down(rearrange(x, "(b n) w (t s) -> b t n (s w)", n=n, s=self.stride))
        x = self.mix(x) + self.latent_pos  # (B, C_h, C_a, W)
        t, a = x.shape[1], x.shape[2]
        x = self.global_out(rearrange(x, "b t a w -> b (t a) w"))
        z = rearrange(self.proj(self.norm(x)), "b (t a) d -> b t a d", t=t, a=a)
        return z if self.skip is None else z + self.skip(patches)


class TAAEDecoder(nn.Module):
    """FASTer TAAE decoder: latent z_q (B, C_h, C_a, latent_dim) -> patches (B, m, n, h*d)."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        m, n, w = cfg.num_time_patches, cfg.num_groups, cfg.width
        self.n, self.m = n, m
        self.proj = nn.Linear(cfg.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.zeros(1, cfg.code_horizon, cfg.code_dims, w))
        self.global_in = _transformer(cfg, max(1, cfg.dec_layers // 2))
        self.mix = TokenMix(cfg.code_dims, n)
        self.stride = m // cfg.code_horizon
        self.up = nn.Linear(w, self.stride * w)  # = ConvTranspose1d(kernel = stride = m / C_h)
        self.local = ConvBlock(w, cfg.conv_kernel)
        self.pos = nn.Parameter(torch.zeros(1, m, n, w))
        self.global_out = _transformer(cfg, cfg.dec_layers)
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.patch_size)
        n_latent = cfg.code_horizon * cfg.code_dims * cfg.latent_dim
        self.skip = (LinearSkip(n_latent, m * n * cfg.patch_size, (m, n, cfg.patch_size))
                     if cfg.linear_skip else None)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.latent_pos, std=0.02)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        _conv_to_linear(state, prefix + "up.", transposed=True)
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def forward(self, z: Tensor) -> Tensor:
        b, t, a, _ = z.shape
        x = self.proj(z) + self.latent_pos  # (B, C_h, C_a, W)
        x = self.global_in(rearrange(x, "b t a w -> b (t a) w"))
        x = self.up(self.mix(rearrange(x, "b (t a) w -> b t a w", t=t)))  # (B, C_h, n, s*W)
        x = self.local(rearrange(x, "b t n (s w) -> (b n) w (t s)", s=self.stride))  # (B*n, W, m)
        x = rearrange(x, "(b n) w m -> b m n w", n=self.n) + self.pos
        x = self.global_out(rearrange(x, "b m n w -> b (m n) w"))
        x = rearrange(self.head(self.norm(x)), "b (m n) p -> b m n p", m=self.m)
        return x if self.skip is None else x + self.skip(z)
