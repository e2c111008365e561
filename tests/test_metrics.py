"""Metrics: PSNR of a known offset, MS-SSIM of identical frames, LPIPS reference distances."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics, msssim_frames, psnr_frames, psnr_yuv_frames
from tests.conftest import need_shared, smooth_clip


def test_psnr_of_known_offset():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a + 5
    expected = 10 * math.log10(255 ** 2 / 25)
    np.testing.assert_allclose(psnr_frames(a, b), expected)
    # A grey offset is a pure luma offset of 5: Y PSNR is the same, U and V are exact (infinite).
    assert np.isinf(psnr_yuv_frames(a, b)).all()
    assert np.isinf(psnr_frames(a, a)).all()


def test_msssim_identical_is_one_and_falls_with_noise():
    a = smooth_clip(2, 192, 192)
    np.testing.assert_allclose(msssim_frames(a, a), 1.0, atol=1e-6)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    assert (msssim_frames(a, noisy) < 0.99).all()
    with pytest.raises(ValueError, match="161"):
        msssim_frames(a[:, :100], a[:, :100])


def test_lpips_reference_values():
    check = need_shared("weights", "lpips", "check")
    from PIL import Image
    from vtok.codec.models.perceptual import build_lpips
    import torch

    def load(name):
        x = np.asarray(Image.open(check / name).convert("RGB"), np.float32)
        return torch.from_numpy(x).permute(2, 0, 1)[None] / 127.5 - 1

    model = build_lpips(spatial=True)
    ref = load("ex_ref.png")
    with torch.inference_mode():
        d0 = float(model(ref, load("ex_p0.png")).mean())
        d1 = float(model(ref, load("ex_p1.png")).mean())
    assert round(d0, 3) == 0.722 and round(d1, 3) == 0.138


def test_clip_metrics_keys():
    need_shared("weights", "lpips", "alexnet_features.safetensors")
    a = smooth_clip(2, 176, 176)
    m = clip_metrics(a, a, LPIPSMetric())
    assert m["lpips"] == pytest.approx(0.0, abs=1e-6) and m["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
