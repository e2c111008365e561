"""Two ways to get many rates from one set of weights, measured on the same clips (``vtok bench ladder``).

* ``bits``: code only the first ``k`` bits of every token (the tokenizer was trained with nested dropout of trailing
  bits, Rippel et al., arXiv 1402.0915), ``vtok compress --bits k``.
* ``scale``: resolution scaling — resize the clip by ``s`` (bicubic), code it with full tokens, decode and resize back.

``vtok compress --rate N`` combines them (``codec.ladder.rate_ladder``): scales below the bit ladder.

Both go through real ``.vtok`` files; quality is measured at the clip's own size against the source frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vtok.bench.analysis.bdrate import bd
from vtok.bench.datasets import eval_clips
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.codec.loading import load_codec
from vtok.codec.ladder import bit_ladder, coded_size
from vtok.codec.media.read import resize_frames

DEFAULT_SCALES = (1.0, 0.75, 0.5, 0.375, 0.25)


def _round_trip(clip: np.ndarray, codec, bits=None) -> tuple[np.ndarray, int]:
    data = codec.compress(clip, fps=30, bits=bits)  # the bytes of the .vtok file
    return codec.decompress(data), len(data)


def compare_ladders(model=None, data=None, frames: int = 33, size=(640, 360), scales=DEFAULT_SCALES,
                    json_path=None, log=print) -> dict:
    codec = load_codec(model)
    ladder = bit_ladder(codec.tokenizer)
    lp = LPIPSMetric()
    acc = {"bits": {}, "scale": {}}
    for name, clip in eval_clips(data, frames, size):
        pixels = clip[..., 0].size
        for k in ladder:
            dec, nbytes = _round_trip(clip, codec, bits=k)
            acc["bits"].setdefault(k, []).append({"bpp": nbytes * 8 / pixels, **clip_metrics(clip, dec, lp)})
        for s in scales:
            small = resize_frames(clip, coded_size(clip.shape[2], clip.shape[1], s)) if s < 1 else clip
            dec, nbytes = _round_trip(small, codec)
            back = resize_frames(dec, (clip.shape[2], clip.shape[1]))
            acc["scale"].setdefault(s, []).append({"bpp": nbytes * 8 / pixels, **clip_metrics(clip, back, lp)})
        log(f"{name}: done")
    curves = {}
    for way, pts in acc.items():
        rows = []
        for key, vals in pts.items():
            rows.append({"point": key, **{m: float(np.mean([v[m] for v in vals])) for m in vals[0]}})
        curves[way] = sorted(rows, key=lambda r: r["bpp"])
    res = {"frames": frames, "size": list(size), "ladder_bits": ladder, "scales": list(scales), "curves": curves,
           "bd_scale_vs_bits": {}}
    for metric, higher in (("psnr", True), ("ms_ssim", True), ("lpips", False)):
        a, t = curves["bits"], curves["scale"]
        r, d = bd([p["bpp"] for p in a], [p[metric] for p in a], [p["bpp"] for p in t], [p[metric] for p in t], higher)
        res["bd_scale_vs_bits"][metric] = {"bd_rate_percent": r, "bd_quality": d}
    for way, rows in curves.items():
        for p in rows:
            log(f"{way:5s} {str(p['point']):>5s}: {p['bpp']:.4f} bpp, PSNR {p['psnr']:.2f}, "
                f"MS-SSIM {p.get('ms_ssim', float('nan')):.4f}, LPIPS {p['lpips']:.4f}")
    log("BD of resolution scaling against the bit ladder: " + json.dumps(res["bd_scale_vs_bits"]))
    if json_path:
        Path(json_path).write_text(json.dumps(res, indent=1))
    return res
