"""FASTerVLA end to end on tiny configs: prediction, save/load, real from_pretrained, training."""

import numpy as np
import pytest
import torch
from policy_helpers import (
    FakeTokenizer,
    fake_batch,
    fake_observation,
    fit_steps,
    single_thread,  # noqa: F401  (fixture)
    tiny_policy,
)

from faster_ros.policy import FASTerVLA, FASTerVLAConfig
from faster_ros.policy.backbones import hf_config_from, load_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

def test_config_validation_names_field_and_value():
    with pytest.raises(ValueError, match="block_size 99"):
        FASTerVLAConfig.preset("debug", block_size=99)
    with pytest.raises(ValueError, match=r"num_cameras must be 1\.\.3, got 4"):
        FASTerVLAConfig.preset("debug", num_cameras=4)
    with pytest.raises(ValueError, match="backbone"):
        FASTerVLAConfig(backbone="llava")
    for name in ("debug", "tiny", "paligemma-3b", "smolvlm-500m"):
        assert FASTerVLAConfig.preset(name).tokens_per_chunk > 0


@pytest.mark.parametrize("backbone", ["paligemma", "smolvlm"])
def test_predict_action_chunk_shapes_and_timing(backbone):
    model = tiny_policy(backbone, num_cameras=2, cameras=("head", "wrist"))
    cfg = model.config
    out = model.predict_action_chunk(fake_observation(cfg))
    assert out.ok
    assert out.actions.shape == (cfg.chunk_size, cfg.action_dim)
    assert out.actions.dtype == np.float32
    assert out.codes.shape == (cfg.codebooks, cfg.code_horizon, cfg.code_dims)
    assert out.tokens.shape == (cfg.tokens_per_chunk,)
    assert set(out.timing) == {"image_ms", "context_ms", "block_ms", "detokenize_ms",
                               "total_ms"}
    assert len(out.timing["block_ms"]) == out.passes == 2
    assert (out.actions >= 0).all() and (out.actions <= 1).all()  # clipped to the action range


def test_missing_camera_is_an_error():
    model = tiny_policy(num_cameras=2, cameras=("head", "wrist"))
    obs = fake_observation(model.config)
    del obs.images["wrist"]
    with pytest.raises(ValueError, match="wrist"):
        model.predict_action_chunk(obs)


def test_save_pretrained_round_trip(tmp_path):
    model = tiny_policy()
    model.provenance = {"instruction": "pick up the cup"}
    model.save_pretrained(tmp_path)
    loaded = FASTerVLA.from_pretrained(tmp_path, action_tokenizer=FakeTokenizer(model.config))
    assert loaded.config == model.config
    obs = fake_observation(model.config)
    a, b = (m.predict_action_chunk(obs, greedy=True) for m in (model, loaded))
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.actions, b.actions)
    batch = fake_batch(model)
    with torch.no_grad():
        torch.manual_seed(0)
        la, _ = model(batch)
        torch.manual_seed(0)
        lb, _ = loaded(batch)
    assert float(la) == float(lb)


def test_image_crop_selects_the_region_and_survives_save_load(tmp_path):
    """The model sees only the configured region: a frame red inside the crop and blue outside
    comes out all red; the crop is part of the saved config; a bad crop names the field."""
    with pytest.raises(ValueError, match=r"image_crop .*got \(0\.5, 0\.0, 0\.2, 1\.0\)"):
        FASTerVLAConfig.preset("debug", image_crop=(0.5, 0.0, 0.2, 1.0))
    with pytest.raises(ValueError, match="image_crop"):
        FASTerVLAConfig.preset("debug", image_crop=(0.0, 0.0, 1.0))
    crop = (0.25, 0.125, 0.75, 0.875)
    model = tiny_policy(image_crop=crop)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 2] = 255  # blue outside
    frame[60:180, 40:280] = (255, 0, 0)  # red exactly inside the crop
    out = model.processor.resize(frame)
    s = model.config.image_size
    assert out.shape == (s, s, 3)
    assert (out[..., 0] == 255).all() and (out[..., 2] == 0).all()
    plain = tiny_policy().processor.resize(frame)
    assert (plain[..., 2] > 0).any()  # without the crop the blue border is seen
    model.save_pretrained(tmp_path)
    loaded = FASTerVLA.from_pretrained(tmp_path, action_tokenizer=FakeTokenizer(model.config))
    assert loaded.config.image_crop == crop
    assert np.array_equal(loaded.processor.resize(frame), out)


@pytest.mark.parametrize("family", ["paligemma", "smolvlm"])
def test_load_backbone_real_from_pretrained(tmp_path, family):
    """A tiny checkpoint saved by transformers loads through from_pretrained(local_dir), with
    its own tokenizer, and the policy resizes its embedding table with the action slots."""
    from faster_ros.policy.backbones import _FAMILIES

    cfg = FASTerVLAConfig.preset("debug", backbone=family)
    vocab = 60  # a "pretrained" vocabulary without action tokens
    text = build_plain_text_tokenizer(vocab)
    torch.manual_seed(0)
    hf = _FAMILIES[family][1](hf_config_from(cfg, vocab))
    hf.save_pretrained(tmp_path)
    text.save_pretrained(tmp_path)
    backbone = load_backbone(tmp_path)
    assert backbone.family == family and backbone.vocab_size == vocab
    torch.testing.assert_close(backbone.embedding.weight, hf.get_input_embeddings().weight)
    policy = FASTerVLA.build(cfg.replace(backbone_path=str(tmp_path)), state_low=np.zeros(3),
                             state_high=np.ones(3))
    assert policy.processor.action_offset == vocab
    assert policy.backbone.vocab_size == vocab + cfg.action_vocab_size
    torch.testing.assert_close(policy.backbone.embedding.weight[:vocab],
                               hf.get_input_embeddings().weight)
    policy.action_tokenizer = FakeTokenizer(cfg)
    assert policy.predict_action_chunk(fake_observation(cfg)).ok


def build_plain_text_tokenizer(vocab: int):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<bos>", "<eos>", "state", ";", *map(str, range(20))]
    words += [f"w{i}" for i in range(vocab - len(words))]
    model = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=model, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")


def test_training_step_reduces_loss_on_tiny_batch():
    model = tiny_policy()
    losses = fit_steps(model, fake_batch(model, size=4), 30)
    assert losses[-1] < 0.6 * losses[0]


def test_runtime_api_set_decoding_and_action_spec():
    model = tiny_policy()
    assert model.action_spec == (4, model.config.chunk_size)
    model.set_decoding(greedy=True, top_k=3)
    assert model.config.greedy and model.config.top_k == 3
    obs = fake_observation(model.config)
    a, b = model.predict_action_chunk(obs), model.predict_action_chunk(obs)
    assert np.array_equal(a.tokens, b.tokens)  # greedy: deterministic
    with pytest.raises(ValueError, match="block_size"):
        model.set_decoding(block_size=1000)


def test_decode_levels_decodes_only_the_coarse_codebooks():
    model = tiny_policy()
    seen = []

    class Recording(FakeTokenizer):
        def decode(self, codes, levels=None):
            seen.append(levels)
            return super().decode(codes, levels)

    model.action_tokenizer = Recording(model.config)
    tokens = torch.zeros(1, model.config.tokens_per_chunk, dtype=torch.long)
    model.tokens_to_actions(tokens)
    model.set_decoding(decode_levels=1)
    model.tokens_to_actions(tokens)
    assert seen == [None, 1]  # default 0: every codebook
    with pytest.raises(ValueError, match="decode_levels 3 exceeds the 2 codebooks"):
        model.set_decoding(decode_levels=3)


def test_keypoint_tokens_follow_a_bright_spot_train_and_survive_save_load(tmp_path):
    """keypoints K: K more image tokens per camera; their spatial-softmax positions move with
    the image content; the stem gets gradients; the saved policy predicts the same."""
    from faster_ros.policy.modeling import KeypointTokens

    model = tiny_policy(keypoints=3)
    cfg = model.config
    batch = fake_batch(model)
    plain = tiny_policy()
    assert (model.encode_images(batch["pixels"]).shape[1]
            == plain.encode_images(batch["pixels"]).shape[1] + 3 * cfg.num_cameras)
    loss, _ = model.train()(batch)
    loss.backward()
    assert model.keypoint_tokens.stem[0].weight.grad.abs().sum() > 0
    # a keypoint map that is the red channel finds a red spot wherever it is
    spot = KeypointTokens(1, 8)
    with torch.no_grad():
        for layer in spot.stem:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.zero_()
                layer.bias.zero_()
        spot.stem[0].weight[0, 0, 2, 2] = 1.0  # channel 0 of the stem: the red pixel
        spot.stem[2].weight[0, 0, 1, 1] = 1.0
        spot.stem[4].weight[0, 0] = 1.0
        spot.log_temperature.fill_(-3.0)
    frames = -torch.ones(2, 3, 32, 32)
    frames[0, 0, 4:6, 4:6] = 1.0  # top left
    frames[1, 0, 26:28, 24:26] = 1.0  # bottom right
    xy = spot.positions(frames)[:, 0]
    assert xy[0, 0] < -0.5 and xy[0, 1] < -0.5 and xy[1, 0] > 0.3 and xy[1, 1] > 0.5
    model.eval().save_pretrained(tmp_path)
    loaded = FASTerVLA.from_pretrained(tmp_path, action_tokenizer=FakeTokenizer(cfg))
    assert loaded.config.keypoints == 3
    obs = fake_observation(cfg)
    a, b = (m.predict_action_chunk(obs, greedy=True) for m in (model, loaded))
    assert np.array_equal(a.tokens, b.tokens)
