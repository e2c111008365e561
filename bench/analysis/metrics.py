"""Quality metrics on decoded uint8 frames ``(T, H, W, 3)``: PSNR (RGB and YUV 6:1:1), MS-SSIM, LPIPS.

* MS-SSIM: Wang et al., "Multi-scale structural similarity for image quality assessment" (2003), via pytorch-msssim.
* LPIPS: Zhang et al. (arXiv 1801.03924), AlexNet variant, backbone from a local file (see ``codec.training.losses``).
All per-clip values are means of per-frame values.
"""

from __future__ import annotations

import numpy as np
import torch

from vtok.codec.models.perceptual import build_lpips


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"metrics need two uint8 clips of one shape, got {a.shape} {a.dtype} and {b.shape} {b.dtype}")


def psnr_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame RGB PSNR in dB (peak 255); identical frames give inf."""
    _check(a, b)
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0 ** 2 / mse)


def rgb_to_yuv(x: np.ndarray) -> np.ndarray:
    """BT.601 full-range RGB → YUV, float64 ``(..., 3)``."""
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
    return x.astype(np.float64) @ m.T + np.array([0.0, 128.0, 128.0])


def psnr_yuv_frames(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame YUV PSNR weighted 6:1:1 (Y:U:V), on BT.601 full-range conversions of the RGB frames."""
    _check(a, b)
    d = (rgb_to_yuv(a) - rgb_to_yuv(b)) ** 2
    mse = d.reshape(len(a), -1, 3).mean(1)
    with np.errstate(divide="ignore"):
        p = 10 * np.log10(255.0 ** 2 / mse)
    return (6 * p[:, 0] + p[:, 1] + p[:, 2]) / 8


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy()).permute(0, 3, 1, 2).float()


def msssim_frames(a: np.ndarray, b: np.ndarray, batch: int = 8) -> np.ndarray:
    """Per-frame MS-SSIM (5 scales; frames need a short side of at least 161 pixels)."""
    from pytorch_msssim import ms_ssim

    _check(a, b)
    if min(a.shape[1:3]) < 161:
        raise ValueError(f"MS-SSIM needs frames at least 161 pixels on the short side, got {a.shape[2]}x{a.shape[1]}")
    out = []
    with torch.inference_mode():
        for i in range(0, len(a), batch):
            out.append(ms_ssim(_to_tensor(a[i:i + batch]), _to_tensor(b[i:i + batch]), data_range=255,
                               size_average=False))
    return torch.cat(out).numpy().astype(np.float64)


class LPIPSMetric:
    """LPIPS-alex distance per frame (lower is better). Args: backbone (path to the AlexNet safetensors)."""

    def __init__(self, backbone=None):
        self.model = build_lpips(backbone)

    def frames(self, a: np.ndarray, b: np.ndarray, batch: int = 8) -> np.ndarray:
        _check(a, b)
        out = []
        with torch.inference_mode():
            for i in range(0, len(a), batch):
                x = _to_tensor(a[i:i + batch]) / 127.5 - 1
                y = _to_tensor(b[i:i + batch]) / 127.5 - 1
                out.append(self.model(x, y).flatten())
        return torch.cat(out).numpy().astype(np.float64)


def clip_metrics(ref: np.ndarray, dec: np.ndarray, lpips: LPIPSMetric | None = None) -> dict:
    """Mean per-frame PSNR (RGB, YUV 6:1:1), MS-SSIM (when the frames are large enough) and LPIPS of a clip."""
    out = {"psnr": float(np.mean(psnr_frames(ref, dec))), "psnr_yuv": float(np.mean(psnr_yuv_frames(ref, dec)))}
    if min(ref.shape[1:3]) >= 161:
        out["ms_ssim"] = float(np.mean(msssim_frames(ref, dec)))
    if lpips is not None:
        out["lpips"] = float(np.mean(lpips.frames(ref, dec)))
    return out
