"""Loss budget of a TAEF2-based tokenizer: where its decibels go, stage by stage, and what its bits look like.

Rows, each on the same frames (PSNR / MS-SSIM / LPIPS on the decoded uint8 frames):

* ``taef2``: TAEF2 per frame, unquantised (its own full-resolution stem and head);
* ``stem_head``: the tokenizer's cheap stem and head around TAEF2's unchanged middle (encoder layers 7–14, decoder
  layers 1–10), per frame, unquantised;
* ``no_binarisation``: the tokenizer's whole video path (temporal pooling, its trained middle) with the encoder's
  continuous output fed to the decoder instead of its signs;
* ``tokens``: the tokenizer as it codes, every bit of every token.

Bit statistics of the coded tokens (GOPs as the codec codes them): each bit channel's marginal entropy, how often it
flips between consecutive latent frames, and the rate the token prior gives it, split by intra (a GOP's first latent
frame, one picture) and later latent frames (four pictures each). VidTok's ablation of LFQ (arXiv 2412.13061) and
TAEF2 (madebyollin/taesd) are the references this is read against (docs/MODELS.md, "Loss budget").
"""

from __future__ import annotations

import json

import numpy as np
import torch

from vtok.bench.datasets import eval_clips
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.codec.loading import load_codec
from vtok.codec.entropy import token_costs
from vtok.codec.models.layers import fold, unfold
from vtok.codec.models.taef2 import load_taef2
from vtok.codec.models.shapes import pad_video
from vtok.codec.models.streaming import as_frames as _as_frames, to_uint8


def _per_frame(x: torch.Tensor, fn, batch: int = 3) -> torch.Tensor:
    """Apply an image function ``(N, 3, H, W) → (N, 3, H, W)`` to every frame of ``(1, 3, T, H, W)``."""
    h, t = fold(x)
    return unfold(torch.cat([fn(h[i:i + batch]) for i in range(0, len(h), batch)]), t)


def _uint8(y: torch.Tensor, size) -> np.ndarray:
    t, h, w = size
    return to_uint8(y[0, :, :t, :h, :w])


@torch.inference_mode()
def budget_rows(clip: np.ndarray, codec, taef2) -> dict:
    """The four reconstructions of one uint8 clip ``(T, H, W, 3)``: name → uint8 frames like ``clip``."""
    tok = codec.tokenizer
    enc, dec = taef2
    x = pad_video(_as_frames(clip))
    size = clip.shape[:3]
    out = {"taef2": _uint8(_per_frame(x, lambda f: dec(enc(f.add(1).mul(0.5))).mul(2).sub(1)), size)}
    if tok.cfg.arch == "tae":
        stem, head = tok.encoder.stem, tok.decoder.head

        def around(f):
            z = enc.run(stem(f.add(1).mul(0.5)), 7, len(enc.layers))
            return head(dec.run(z, 0, 11)).mul(2).sub(1)

        out["stem_head"] = _uint8(_per_frame(x, around), size)
    z = tok.encoder(x)
    out["no_binarisation"] = _uint8(tok.decoder(z), size)
    out["tokens"] = _uint8(tok.decoder(tok.quantizer(z).codes), size)
    return out


def bit_statistics(tokens: list, costs: list, bits: int) -> dict:
    """Per bit channel: marginal entropy (bits), flip rate between consecutive latent frames of a GOP, and the prior's
    rate split by intra / later latent frames. ``tokens``: GOPs ``(T', H', W')``; ``costs``: ``token_costs`` of each."""
    planes = [((g[:, None] >> np.arange(bits)[None, :, None, None]) & 1) for g in tokens]  # (T', D, H, W)
    p1 = np.mean(np.concatenate([p.transpose(1, 0, 2, 3).reshape(bits, -1) for p in planes], 1), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.nan_to_num(-(p1 * np.log2(p1) + (1 - p1) * np.log2(1 - p1)))
    flips = [np.abs(np.diff(p, axis=0)).transpose(1, 0, 2, 3).reshape(bits, -1) for p in planes if len(p) > 1]
    flip = np.mean(np.concatenate(flips, 1), 1) if flips else np.zeros(bits)
    n_intra = sum(g[0].size for g in tokens)
    n_inter = sum(g[1:].size for g in tokens)
    intra = sum(c[0] for c in costs)
    inter = sum(c[1:].sum(0) for c in costs)
    return {"p1": p1.tolist(), "entropy": entropy.tolist(), "flip_rate": flip.tolist(),
            "intra_bits_per_bit": (intra / max(1, n_intra)).tolist(),
            "inter_bits_per_bit": (inter / max(1, n_inter)).tolist(),
            "intra_bits": float(np.sum(intra)), "inter_bits": float(np.sum(inter)),
            "intra_tokens": int(n_intra), "inter_tokens": int(n_inter)}


def run_budget(model=None, data=None, frames: int = 9, size=(640, 360), gop_frames: int = 33, gop: int = 17,
               json_path=None, log=print) -> dict:
    """``vtok bench budget``: the four rows on the first ``frames`` frames of every clip, and the bit statistics of
    the first ``gop_frames`` frames coded in GOPs of ``gop`` frames."""
    codec = load_codec(model)
    taef2 = load_taef2()
    metric = LPIPSMetric()
    rows: dict[str, list] = {}
    for name, clip in eval_clips(data, frames, size):
        for row, rec in budget_rows(clip, codec, taef2).items():
            m = clip_metrics(clip, rec, metric)
            rows.setdefault(row, []).append({"clip": name, **m})
            log(json.dumps({"clip": name, "row": row, **{k: round(v, 4) for k, v in m.items()}}))
    mean = {row: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if k != "clip"} for row, rs in rows.items()}
    tok = codec.tokenizer
    tokens, costs, pixels = [], [], 0
    for _, clip in eval_clips(data, gop_frames, size):
        pixels += clip.shape[0] * clip.shape[1] * clip.shape[2]
        for s in range(0, len(clip), gop):
            g = tok.encode(clip[s:s + gop])
            tokens.append(g)
            costs.append(token_costs(codec.prior, g, tok.bits))
    stats = bit_statistics(tokens, costs, tok.bits)
    stats["bpp"] = (stats["intra_bits"] + stats["inter_bits"]) / pixels
    res = {"family_id": codec.family_id, "decoder_id": codec.tokenizer.decoder_id, "frames": frames, "size": list(size), "gop_frames": gop_frames,
           "gop": gop, "rows": rows, "mean": mean, "bits": stats}
    for row, m in mean.items():
        log(f"{row:16s} PSNR {m['psnr']:.2f} dB  MS-SSIM {m.get('ms_ssim', float('nan')):.4f}  "
            f"LPIPS {m.get('lpips', float('nan')):.4f}")
    share = stats["intra_bits"] / (stats["intra_bits"] + stats["inter_bits"])
    log(f"bits: {stats['bpp']:.4f} bpp, intra latent frames {100 * share:.1f} % of the rate; mean entropy "
        f"{np.mean(stats['entropy']):.3f} bits, flip rate {np.mean(stats['flip_rate']):.3f}, prior "
        f"{np.mean(stats['intra_bits_per_bit']):.3f} / {np.mean(stats['inter_bits_per_bit']):.3f} bits per bit "
        f"(intra / later)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, indent=1)
    return res
