"""Evaluation clips: ``../shared/datasets/eval`` by default (``VTOK_EVAL_DIR`` overrides), or any files/folders.

The default protocol follows MAGVIT-v2's for MCL-JCV: frames resized (bicubic) to 640×360, the first N frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vtok.codec.media.read import list_videos
from vtok.codec.paths import EVAL_DATA
from vtok.codec.media.read import read_video

DEFAULT_EVAL_DIR = EVAL_DATA


def default_eval_dir() -> Path:
    return Path(os.environ.get("VTOK_EVAL_DIR", DEFAULT_EVAL_DIR))


def eval_clips(paths=None, frames: int | None = 33, size: tuple[int, int] | None = (640, 360)):
    """Yield ``(name, uint8 clip (T, H, W, 3))`` for every video in ``paths`` (default: the shared eval set)."""
    paths = paths or [default_eval_dir()]
    files = list_videos(paths)
    if not files:
        raise FileNotFoundError(f"no video files in {', '.join(map(str, paths))}")
    for f in files:
        yield f.name, read_video(f, max_frames=frames, resize=size)


def synthetic_clip(frames: int = 17, height: int = 360, width: int = 640, seed: int = 0) -> np.ndarray:
    """A moving, textured test clip (uint8 ``(T, H, W, 3)``) for when no real clip is at hand."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        sy, sx = (yy + 2 * t) / 8, (xx + 3 * t) / 8
        iy, ix = sy.astype(int) % (base.shape[0] - 1), sx.astype(int) % (base.shape[1] - 1)
        tex = base[iy, ix]
        wave = 60 * np.sin((xx + 4 * t) / 23.0)[..., None] * np.cos(yy / 31.0)[..., None]
        out[t] = np.clip(0.6 * tex + 0.4 * 128 + wave, 0, 255).astype(np.uint8)
    return out


def mcl_jcv_files(folder) -> list[Path]:
    """The MCL-JCV sequences in a user's folder: raw 8-bit 4:2:0 files named like ``videoSRC01_1920x1080_30.yuv``
    (size and frame rate from the name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"MCL-JCV folder not found: {folder}")
    files = sorted(folder.glob("videoSRC*_*x*_*.yuv"))
    if not files:
        raise FileNotFoundError(f"no MCL-JCV sequences (videoSRC*_WxH_FPS.yuv) in {folder}")
    return files
