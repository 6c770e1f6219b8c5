"""FASTerVQ: shapes, round trip, determinism, token order, levels, save/load guards, errors."""

import numpy as np
import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file, save_file

from faster_ros.embodiment import load_embodiment
from faster_ros.tokenizer import FASTerVQ, TokenizerLoadError, VQConfig
from faster_ros.tokenizer.tokens import codes_to_tokens, tokens_to_codes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def emb():
    return load_embodiment("g1_inspire")


def smooth_actions(batch: int, cfg: VQConfig, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, cfg.chunk_size)[None, :, None]
    phase = torch.rand(batch, 1, cfg.action_dim, generator=g) * 6
    return 0.3 * torch.sin(2 * t + phase) + 0.5


@pytest.fixture(scope="module")
def trained(emb):
    """A debug-size model matching g1_inspire's code shape, a few optimisation steps."""
    torch.manual_seed(0)
    cfg = VQConfig.from_embodiment(emb, "debug", codebook_size=emb.tokenizer.codebook_size)
    model = FASTerVQ(cfg)
    data = smooth_actions(64, cfg)
    model.fit_normalizer(data.reshape(-1, cfg.action_dim))
    model.init_codebooks(data)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    model.train()
    for _ in range(3):
        out = model(data[:16])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return model.eval()


def test_config_validation_names_field_and_value(emb):
    with pytest.raises(ValueError, match=r"VQConfig\.time_patch 5 does not divide chunk_size 32"):
        VQConfig.from_embodiment(emb, "debug", time_patch=5)
    with pytest.raises(ValueError, match=r"VQConfig\.patch_groups must partition"):
        VQConfig(action_dim=3, chunk_size=8, patch_groups=((0, 1),))
    with pytest.raises(ValueError, match=r"VQConfig\.width must be a positive int, got 0"):
        VQConfig.from_embodiment(emb, "debug", width=0)
    cfg = VQConfig.from_embodiment(emb)
    assert cfg.tokens_per_chunk == 3 * 2 * 13 and cfg.values_per_token >= 8
    assert VQConfig.from_dict(cfg.to_dict()) == cfg


def test_forward_and_encode_decode_shapes(trained):
    cfg = trained.config
    x = smooth_actions(5, cfg, seed=1)
    out = trained.train()(x)
    trained.eval()
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    codes = trained.encode(x)
    assert codes.shape == (5, cfg.codebooks, cfg.code_horizon, cfg.code_dims)
    assert codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < cfg.codebook_size
    recon = trained.decode(codes)
    assert recon.shape == x.shape and recon.dtype == torch.float32
    np_codes = trained.encode(x.numpy())  # ndarray input
    assert torch.equal(np_codes, codes)


def test_determinism_and_save_load(trained, tmp_path):
    x = smooth_actions(4, trained.config, seed=2)
    c1, c2 = trained.encode(x), trained.encode(x)
    assert torch.equal(c1, c2)
    assert torch.equal(trained.decode(c1), trained.decode(c1))
    trained.save(tmp_path / "m")
    loaded = FASTerVQ.load(tmp_path / "m")
    assert torch.equal(loaded.encode(x), c1)
    assert torch.equal(loaded.decode(c1), trained.decode(c1))
    assert loaded.config == trained.config


def test_token_order_pinned_and_inverse(trained):
    codes = torch.arange(2 * 2 * 3).reshape(1, 2, 2, 3)  # c[q, t, a] = 6 q + 3 t + a
    assert codes_to_tokens(codes).tolist() == [list(range(12))]
    c = torch.tensor([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]])  # (1, N_c=2, C_h=2, C_a=2)
    assert codes_to_tokens(c).tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert torch.equal(tokens_to_codes(codes_to_tokens(c), 2, 2, 2), c)
    cfg = trained.config
    real = trained.encode(smooth_actions(3, cfg))
    tokens = trained.codes_to_tokens(real)
    assert tokens.shape == (3, cfg.tokens_per_chunk)
    assert torch.equal(tokens[:, : cfg.code_dims], real[:, 0, 0])  # level 0, horizon 0 first
    assert torch.equal(trained.tokens_to_codes(tokens), real)
    with pytest.raises(ValueError, match="tokens must be"):
        trained.tokens_to_codes(tokens[:, :-1])


def test_levels_decode_coarse_to_fine(trained):
    cfg = trained.config
    x = smooth_actions(8, cfg, seed=3)
    codes = trained.encode(x)
    full = trained.decode(codes)
    assert torch.equal(trained.decode(codes, levels=cfg.codebooks), full)
    for k in range(1, cfg.codebooks):
        part = trained.decode(codes, levels=k)
        assert part.shape == full.shape
        changed = codes.clone()
        changed[:, k:] = (changed[:, k:] + 1) % cfg.codebook_size  # finer levels ignored
        assert torch.equal(trained.decode(changed, levels=k), part)
    with pytest.raises(ValueError, match="levels"):
        trained.decode(codes, levels=cfg.codebooks + 1)


def test_bad_inputs_raise_clear_errors(trained):
    cfg = trained.config
    x = smooth_actions(2, cfg)
    nan = x.clone()
    nan[1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/inf.*\[1, 3, 4\]"):
        trained.encode(nan)
    with pytest.raises(ValueError, match="wrong action width.*D=26.*got 25"):
        trained.encode(x[..., :25])
    with pytest.raises(ValueError, match="wrong chunk length"):
        trained.encode(x[:, :10])
    codes = trained.encode(x)
    bad = codes.clone()
    bad[0, 0, 0, 0] = cfg.codebook_size
    with pytest.raises(ValueError, match=r"codes out of range: must be in \[0, 1024\)"):
        trained.decode(bad)
    bad[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="codes out of range"):
        trained.decode(bad)
    with pytest.raises(ValueError, match="codes must be"):
        trained.decode(codes[:, :, 0])
    with pytest.raises(ValueError, match="integers"):
        trained.decode(codes.float())


def test_checkpoint_without_initted_does_not_rerun_kmeans(trained, tmp_path):
    x = smooth_actions(6, trained.config, seed=4)
    before = trained.encode(x)
    trained.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if not k.endswith("initted")}
    save_file(state, str(weights))
    with pytest.warns(UserWarning, match="initted missing"):
        loaded = FASTerVQ.load(tmp_path / "m")
    assert all(loaded.quantizer.initialised())
    assert torch.equal(loaded.encode(x), before)  # the first forward keeps the codebooks
    # control: without the guard the library re-runs k-means on the first (even eval) forward
    for layer in loaded.quantizer.rvq.layers:
        layer._codebook.initted.fill_(False)
    assert not torch.equal(loaded.encode(x), before)


def test_uninitialised_codebook_is_refused(emb, tmp_path):
    cfg = VQConfig.from_embodiment(emb, "debug", codebook_size=1024)
    fresh = FASTerVQ(cfg)  # k-means never ran: initted False
    fresh.fit_normalizer(np.zeros((4, cfg.action_dim)))
    fresh.save(tmp_path / "m")
    with pytest.raises(TokenizerLoadError, match="never initialised"):
        FASTerVQ.load(tmp_path / "m")


def test_load_checks_embodiment(trained, tmp_path):
    trained.save(tmp_path / "m")
    FASTerVQ.load(tmp_path / "m", embodiment="g1_inspire")
    with pytest.raises(TokenizerLoadError, match="action_dim is 26 in the tokenizer, 21"):
        FASTerVQ.load(tmp_path / "m", embodiment="r1lite_wbc")
    cfg = trained.config
    groups = (cfg.patch_groups[1], cfg.patch_groups[0], *cfg.patch_groups[2:])
    other = FASTerVQ(cfg.replace(patch_groups=groups))
    other.load_state_dict(trained.state_dict())
    other.save(tmp_path / "swapped")
    with pytest.raises(TokenizerLoadError, match="patch_groups"):
        FASTerVQ.load(tmp_path / "swapped", embodiment="g1_inspire")


def test_checkpoint_with_conv_layout_loads(trained, tmp_path):
    """Checkpoints written when the kernel=stride down/up maps were Conv1d/ConvTranspose1d
    (e.g. models/g1_inspire_vla/action_tokenizer) load into the Linear layout unchanged."""
    w, s = trained.config.width, trained.encoder.stride
    g = torch.Generator().manual_seed(0)
    down_w, up_w = torch.randn(w, w, s, generator=g), torch.randn(w, w, s, generator=g)
    up_b = torch.randn(w, generator=g)
    trained.save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    state.update({"encoder.down.weight": down_w, "decoder.up.weight": up_w,
                  "decoder.up.bias": up_b})
    save_file(state, str(weights))
    loaded = FASTerVQ.load(tmp_path / "m")
    # reference: the same maps as real convolutions
    x = torch.randn(2, w, trained.config.num_time_patches, generator=g)
    conv = torch.nn.functional.conv1d(x, down_w, loaded.encoder.down.bias, stride=s)
    lin = loaded.encoder.down(rearrange(x, "b w (t s) -> b t (s w)", s=s))
    torch.testing.assert_close(rearrange(lin, "b t w -> b w t"), conv)
    y = torch.randn(2, w, trained.config.code_horizon, generator=g)
    convt = torch.nn.functional.conv_transpose1d(y, up_w, up_b, stride=s)  # (2, W, m)
    lin = loaded.decoder.up(rearrange(y, "b w t -> b t w"))
    torch.testing.assert_close(rearrange(lin, "b t (s w) -> b w (t s)", s=s), convt)
