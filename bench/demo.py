"""``make demo``: tokenize and reconstruct one sample clip with the bundled model and print what happened.

The sample is the first eval clip of ``../shared/datasets/eval`` (33 frames at 640×360); without ../shared, a
synthetic clip. Prints raw token bpp, PSNR, MS-SSIM, LPIPS and encode/decode frames per second, and writes the
reconstruction to ``out/demo_recon.mp4``.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.datasets import default_eval_dir, synthetic_clip
from bench.metrics import LPIPSMetric, clip_metrics
from codec.data import list_videos
from codec.tokenizer import load_tokenizer
from codec.video_io import read_video, write_video


def run_demo(model=None, out_dir="out", frames: int = 33, log=print) -> dict:
    tok = load_tokenizer(model)
    files = list_videos([default_eval_dir()]) if default_eval_dir().is_dir() else []
    if files:
        src = files[0]
        clip = read_video(src, max_frames=frames, resize=(640, 360))
        name = str(src)
    else:
        clip = synthetic_clip(frames)
        name = "synthetic clip (../shared/datasets/eval not found)"
    log(f"model {tok.model_id} ({sum(p.numel() for p in tok.parameters()) / 1e6:.2f} M parameters, "
        f"{tok.bits} bits/token)")
    log(f"input: {name}, {clip.shape[0]} frames at {clip.shape[2]}x{clip.shape[1]}")
    t0 = time.perf_counter()
    tokens = tok.encode(clip)
    t1 = time.perf_counter()
    rec = tok.decode(tokens, size=clip.shape[:3])
    t2 = time.perf_counter()
    m = clip_metrics(clip, rec, LPIPSMetric())
    bpp = tok.bits * tokens.size / clip[..., 0].size
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(out_dir) / "demo_recon.mp4"
    write_video(out, rec, 30)
    log(f"tokens: {tuple(tokens.shape)} x {tok.bits} bits = {tokens.size * tok.bits / 8 / 1024:.1f} KiB raw, "
        f"{bpp:.4f} bpp (before entropy coding)")
    log(f"quality: PSNR {m['psnr']:.2f} dB, MS-SSIM {m.get('ms_ssim', float('nan')):.4f}, LPIPS {m['lpips']:.4f}")
    log(f"speed: encode {clip.shape[0] / (t1 - t0):.1f} fps, decode {clip.shape[0] / (t2 - t1):.1f} fps "
        f"(this machine, {clip.shape[2]}x{clip.shape[1]})")
    log(f"reconstruction written to {out}")
    return {"bpp": bpp, **m}
