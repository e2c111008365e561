"""The causal 3D-CNN tokenizer: causality, image/video consistency, shapes, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vtok.codec.models.layers import CausalConv3d, upsample_latent
from vtok.codec.models.shapes import pad_video, token_shape
from vtok.codec.models.streaming import as_frames as _as_frames
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer, save_tokenizer
from tests.conftest import random_clip, tiny_config


def _latent(tok, video):
    x = pad_video(_as_frames(video))
    with torch.inference_mode():
        return tok.encoder(x)


def test_causal_conv_first_output_sees_first_frame_only():
    torch.manual_seed(0)
    conv = CausalConv3d(2, 3, 3, stride=(2, 1, 1))
    x = torch.randn(1, 2, 5, 4, 4)
    y = conv(x)
    assert y.shape[2] == 3  # 1 + 2k -> 1 + k
    x2 = x.clone()
    x2[:, :, 1:] = torch.randn_like(x2[:, :, 1:])
    assert torch.equal(conv(x2)[:, :, 0], y[:, :, 0])


def test_changing_a_frame_leaves_earlier_latent_frames_unchanged(tiny_tokenizer):
    video = random_clip(13, 32, 48)  # latent frames: {0}, {1-4}, {5-8}, {9-12}
    base_z = _latent(tiny_tokenizer, video)
    base_tokens = tiny_tokenizer.encode(video)
    changed = video.copy()
    changed[6] = 255 - changed[6]  # frame 6 belongs to latent frame 2
    z = _latent(tiny_tokenizer, changed)
    tokens = tiny_tokenizer.encode(changed)
    torch.testing.assert_close(z[:, :, :2], base_z[:, :, :2], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(tokens[:2], base_tokens[:2])
    assert not torch.allclose(z[:, :, 2], base_z[:, :, 2])


def test_decoder_is_causal(tiny_tokenizer):
    tokens = np.random.default_rng(1).integers(0, 2 ** 10, (3, 4, 4))
    a = tiny_tokenizer.decode(tokens)
    t2 = tokens.copy()
    t2[2] = np.random.default_rng(2).integers(0, 2 ** 10, (4, 4))
    b = tiny_tokenizer.decode(t2)
    np.testing.assert_array_equal(a[:5], b[:5])  # frames 0..4 come from latent frames 0 and 1


def test_image_tokens_equal_first_latent_frame_of_video(tiny_tokenizer):
    video = random_clip(9, 40, 24, seed=3)
    img_tokens = tiny_tokenizer.encode(video[:1])
    vid_tokens = tiny_tokenizer.encode(video)
    assert img_tokens.shape == (1, 5, 3)
    np.testing.assert_array_equal(img_tokens[0], vid_tokens[0])


@pytest.mark.parametrize("t,h,w", [(1, 17, 9), (2, 17, 9), (1, 8, 8), (5, 33, 47), (17, 16, 16)])
def test_odd_sizes_round_trip_in_shape(tiny_tokenizer, t, h, w):
    video = random_clip(t, h, w)
    tokens = tiny_tokenizer.encode(video)
    assert tokens.shape == token_shape(t, h, w)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < 2 ** tiny_tokenizer.bits
    out = tiny_tokenizer.decode(tokens, size=(t, h, w))
    assert out.shape == (t, h, w, 3) and out.dtype == np.uint8


def test_numpy_at_the_edges_whatever_comes_in(tiny_tokenizer):
    video = random_clip(5, 16, 16)
    tokens = tiny_tokenizer.encode(torch.from_numpy(video))
    assert isinstance(tokens, np.ndarray) and np.array_equal(tokens, tiny_tokenizer.encode(video))
    frames = tiny_tokenizer.decode(torch.from_numpy(tokens))
    assert isinstance(frames, np.ndarray) and np.array_equal(frames, tiny_tokenizer.decode(tokens))
    assert all(isinstance(p, np.ndarray) for p in tiny_tokenizer.decode_pieces(tokens))


def test_bad_inputs_raise_clear_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="uint8"):
        tiny_tokenizer.encode(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        tiny_tokenizer.encode(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="token values"):
        tiny_tokenizer.decode(np.full((1, 1, 1), 2 ** 10))
    with pytest.raises(ValueError, match="bits"):
        tiny_tokenizer.encode(np.zeros((1, 8, 8, 3), np.uint8), bits=11)


def test_bit_prefix_tokens_are_masked_indices(tiny_tokenizer):
    video = random_clip(5, 16, 24, seed=4)
    full = tiny_tokenizer.encode(video)
    four = tiny_tokenizer.encode(video, bits=4)
    np.testing.assert_array_equal(four, full & 15)
    assert tiny_tokenizer.decode(four, bits=4).shape == (5, 16, 24, 3)


def test_checkpoint_save_load_is_exact(tmp_path, tiny_tokenizer):
    path = tmp_path / "m.safetensors"
    save_tokenizer(tiny_tokenizer, path, half=False)
    loaded = load_tokenizer(path)
    for (k, a), (k2, b) in zip(tiny_tokenizer.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.cfg == tiny_tokenizer.cfg
    assert loaded.model_id == tiny_tokenizer.model_id
    video = random_clip(5, 16, 16)
    np.testing.assert_array_equal(loaded.encode(video), tiny_tokenizer.encode(video))


def test_fp16_checkpoint_loads_into_float32(tmp_path, tiny_tokenizer):
    path = tmp_path / "m16.safetensors"
    save_tokenizer(tiny_tokenizer, path, half=True)
    loaded = load_tokenizer(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for k, v in tiny_tokenizer.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().float())


def test_strict_loading_rejects_unknown_tensors(tmp_path, tiny_tokenizer):
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in tiny_tokenizer.state_dict().items()}
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path), metadata={"format": "vtok-tokenizer", "config": tiny_tokenizer.cfg.to_json()})
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_tokenizer(path)
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.zeros(1)}, str(plain))
    with pytest.raises(ValueError, match="not a vtok tokenizer"):
        load_tokenizer(plain)


def test_upsample_latent_is_causal():
    z = torch.arange(3.0).view(1, 1, 3, 1, 1)
    up = upsample_latent(z, 9, 1, 1).flatten().tolist()
    assert up == [0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_nested_dropout_masks_trailing_bits():
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config(nested_dropout=1.0, min_bits=2)).train()
    x = torch.rand(3, 3, 5, 16, 16) * 2 - 1
    keep = torch.tensor([2, 5, 10])
    mask = tok.bit_mask(keep, torch.zeros(3, 10, 1, 1, 1))
    assert mask[:, :, 0, 0, 0].sum(1).tolist() == [2, 5, 10]
    y, out = tok(x)
    assert y.shape == x.shape and set(out.losses) == {"entropy", "commit"}
