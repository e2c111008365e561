"""``make demo``: compress and decompress one sample clip with the bundled model and print what happened.

The sample is the first eval clip of ``../shared/datasets/eval`` (33 frames at 640×360); without ../shared, a
synthetic clip. The round trip goes through real files (``out/demo.vtok``, ``out/demo_decoded.mkv``); prints size,
bpp, PSNR, MS-SSIM, LPIPS and encode/decode frames per second.
"""

from __future__ import annotations

from pathlib import Path

from vtok.bench.datasets import default_eval_dir, synthetic_clip
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.codec.loading import load_codec
from vtok.codec.media.read import list_videos
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.media.write import VideoWriter
from vtok.codec.media.read import read_video


def run_demo(model=None, out_dir="out", frames: int = 33, log=print) -> dict:
    codec = load_codec(model)
    tok = codec.tokenizer
    files = list_videos([default_eval_dir()]) if default_eval_dir().is_dir() else []
    if files:
        clip = read_video(files[0], max_frames=frames, resize=(640, 360))
        name = f"{files[0].name} (first {len(clip)} frames, resized to 640x360)"
    else:
        clip = synthetic_clip(frames)
        name = "synthetic clip (../shared/datasets/eval not found)"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "demo_source.mkv"
    with VideoWriter(src, clip.shape[2], clip.shape[1], 30) as w:
        w.write(clip)
    log(f"token family {codec.family_id} (decoder {tok.decoder_id}): {sum(p.numel() for p in tok.parameters()) / 1e6:.2f} M "
        f"parameters, {tok.bits} bits/token, token prior {codec.prior.model_id}")
    log(f"input: {name}")
    enc = compress_file(src, out / "demo.vtok", codec=codec, log=log)
    dec = decompress_file(out / "demo.vtok", out / "demo_decoded.mkv", codec=codec, log=log)
    rec = read_video(out / "demo_decoded.mkv")
    m = clip_metrics(clip, rec, LPIPSMetric())
    log(f"size: {enc['bytes']} bytes for {enc['frames']} frames = {enc['bpp']:.4f} bpp "
        f"(raw tokens {enc['raw_token_bits'] / (clip[..., 0].size):.4f} bpp; the prior saves "
        f"{100 * (1 - enc['bytes'] * 8 / enc['raw_token_bits']):.1f} %)")
    log(f"quality: PSNR {m['psnr']:.2f} dB, MS-SSIM {m.get('ms_ssim', float('nan')):.4f}, LPIPS {m['lpips']:.4f}")
    log(f"speed on this machine: encode {enc['fps']:.1f} fps, decode {dec['fps']:.1f} fps "
        f"(whole codec, files included, {clip.shape[2]}x{clip.shape[1]})")
    return {"bpp": enc["bpp"], **m, "encode_fps": enc["fps"], "decode_fps": dec["fps"]}
