"""GOP length against rate and quality: the same clips coded with GOPs of different lengths, real ``.vtok`` bytes.

Every GOP restarts the causal tokenizer and the token prior with an intra latent frame (one picture coded without
temporal context); a longer GOP pays that less often, and a decoder seeking to a frame has to decode from the start of
its GOP. This measures the first; the second is ``gop - 1`` frames at worst.
"""

from __future__ import annotations

import json

import numpy as np

from vtok.bench.datasets import eval_clips
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.codec.loading import load_codec


def run_gop_bench(model=None, data=None, frames: int = 65, size=(640, 360), gops=(17, 33, 65), rates=None,
                  json_path=None, log=print) -> dict:
    """Code the first ``frames`` frames of every clip at each rate point and GOP length; returns per-clip rows and the
    mean bpp / PSNR / MS-SSIM / LPIPS of each (rate, GOP). A GOP of 0 means the whole clip."""
    codec = load_codec(model)
    metric = LPIPSMetric()
    rates = list(rates) if rates is not None else [None]
    rows = []
    for name, clip in eval_clips(data, frames, size):
        pixels = clip.shape[0] * clip.shape[1] * clip.shape[2]
        for rate in rates:
            for gop in gops:
                g = gop or (1 + 4 * -(-(len(clip) - 1) // 4))
                data_ = codec.compress(clip, fps=25, rate=rate, gop=g)
                rec = codec.decompress(data_)
                row = {"clip": name, "rate": rate, "gop": gop, "frames": len(clip), "bpp": len(data_) * 8 / pixels,
                       **clip_metrics(clip, rec, metric)}
                rows.append(row)
                log(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}))
    mean = []
    for rate in rates:
        for gop in gops:
            sel = [r for r in rows if r["rate"] == rate and r["gop"] == gop]
            m = {k: float(np.mean([r[k] for r in sel])) for k in ("bpp", "psnr", "ms_ssim", "lpips") if k in sel[0]}
            mean.append({"rate": rate, "gop": gop, **m})
            log(f"rate {rate if rate is not None else 'top'} GOP {gop or 'clip'}: {m['bpp']:.4f} bpp, "
                f"{m['psnr']:.2f} dB, MS-SSIM {m.get('ms_ssim', float('nan')):.4f}, LPIPS {m.get('lpips', float('nan')):.4f}")
    res = {"family_id": codec.family_id, "decoder_id": codec.tokenizer.decoder_id, "frames": frames, "size": list(size), "rows": rows, "mean": mean}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    return res
