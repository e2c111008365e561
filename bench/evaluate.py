"""Reconstruction quality of a tokenizer on evaluation clips (no entropy coding): PSNR, MS-SSIM, LPIPS, raw bpp.

Raw token bpp = bits per token × tokens / pixels, i.e. the rate before any entropy coding.
"""

from __future__ import annotations

import json
import time

import numpy as np

from vtok.bench.datasets import eval_clips
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.codec.models.zoo import load_tokenizer


def evaluate_tokenizer(model=None, data=None, frames: int = 33, size=(640, 360), bits: int | None = None,
                       lpips: bool = True, device: str = "cpu", log=print) -> dict:
    """Tokenize and reconstruct every clip (the tokenizer on ``device``); returns per-clip rows and their mean."""
    tok = load_tokenizer(model, device)
    metric = LPIPSMetric() if lpips else None
    rows = []
    for name, clip in eval_clips(data, frames, size):
        t0 = time.perf_counter()
        tokens = tok.encode(clip, bits=bits)
        t1 = time.perf_counter()
        rec = tok.decode(tokens, bits=bits, size=clip.shape[:3])
        t2 = time.perf_counter()
        k = bits or tok.bits
        row = {"clip": name, "frames": int(clip.shape[0]), "width": int(clip.shape[2]), "height": int(clip.shape[1]),
               "raw_bpp": k * tokens.size / (clip.shape[0] * clip.shape[1] * clip.shape[2]),
               **clip_metrics(clip, rec, metric),
               "encode_fps": clip.shape[0] / (t1 - t0), "decode_fps": clip.shape[0] / (t2 - t1)}
        rows.append(row)
        log(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    return {"model_id": tok.model_id, "bits": bits or tok.bits, "frames": frames, "size": list(size) if size else None,
            "clips": rows, "mean": mean}


def run_evaluation(model=None, data=None, frames: int = 33, size=(640, 360), bits: int | None = None,
                   json_path=None, device: str = "cpu", log=print) -> dict:
    """``vtok eval``: evaluate, print the mean row, optionally write the JSON."""
    res = evaluate_tokenizer(model, data, frames, size, bits, device=device, log=log)
    m = res["mean"]
    log(f"mean over {len(res['clips'])} clips ({frames} frames, {size[0]}x{size[1]}): raw {m['raw_bpp']:.4f} bpp, "
        f"PSNR {m['psnr']:.2f} dB, MS-SSIM {m.get('ms_ssim', float('nan')):.4f}, LPIPS {m.get('lpips', float('nan')):.4f}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    return res
