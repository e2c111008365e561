"""Encoder-side search: the bits that minimise ``D + λ·R`` through the frozen decoder and the float token prior.

The tokenizer's encoder is one amortised pass; the bits it gives are not the best bits for the decoder that will
read them (the *amortisation gap*; Yang, Bamler, Mandt, "Improving Inference for Neural Image Compression", NeurIPS
2020, arXiv 2006.04240; SGA+, arXiv 2401.17789). A slower preset closes part of that gap per GOP: starting from the
encoder's latent ``z`` (with the temporal hold's choices as its signs), it takes Adam steps on ``z`` through the
straight-through sign (forward ``sign(z)``, backward identity), the decoder and the prior frozen. Only the encoder
side changes: the decoder, the prior, the format and the token family stay, so every file decodes as before.

* ``D``: ``tune="psnr"``, the squared error; ``tune="perceptual"`` (the default), the squared error plus
  ``0.1·LPIPS``.
* ``R``: the float prior's cross-entropy of the coded bits (``TokenPrior.video_rate``) in bits per pixel; bits past
  the coded prefix (a rate point's ``bits``) are not coded and not searched.
* Memory stays bounded at any frame size: the GOP's latent is searched in windows of a few latent frames and a tile
  of ``TILE`` latent positions, each decoded with a margin (one latent frame before it, ``MARGIN`` positions around)
  that is read but not changed; the loss counts the window's own pixels. Windows are searched in coding order, each
  seeing its neighbours' searched values. Inside a window, the decoder's blocks, the prior's coding steps and LPIPS
  (four frames at a time) are recomputed in the backward pass rather than kept (the same gradients).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from vtok.codec.models.shapes import padded_size

# (Adam steps per window, their learning rate) of each preset; fast and medium are the one-pass encoder (medium is
# the default). Measured in docs/MODELS.md, "Encoder search".
PRESETS = {"fast": (0, 0.0), "medium": (0, 0.0), "slow": (3, 0.1), "veryslow": (12, 0.03)}
DEFAULT_PRESET = "medium"
TUNES = ("perceptual", "psnr")
# λ of D + λ·R (R in bits per pixel) for each tune, and the LPIPS weight of the perceptual distortion.
LAMBDA = {"psnr": 1.0, "perceptual": 2.0}
LPIPS_WEIGHT = 0.1
WINDOW_FRAMES = 4  # latent frames searched together (16 frames)
TILE = 48  # latent positions per side of a tile (384 pixels)
MARGIN = 3  # latent positions decoded around a tile for context


@dataclass(frozen=True)
class Search:
    """How an encoder searches: ``steps`` Adam steps of learning rate ``lr`` per window (0: the one-pass encoder)
    minimising the ``tune`` distortion plus ``lam`` × bits per pixel."""

    steps: int = 0
    lr: float = 0.0
    tune: str = "perceptual"
    lam: float = LAMBDA["perceptual"]

    @classmethod
    def of(cls, preset: str | None = None, tune: str | None = None) -> "Search":
        preset, tune = preset or DEFAULT_PRESET, tune or "perceptual"
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if tune not in TUNES:
            raise ValueError(f"tune must be one of {', '.join(TUNES)}, got {tune!r}")
        return cls(*PRESETS[preset], tune, LAMBDA[tune])


class Distortion(torch.nn.Module):
    """``D(x, y)`` of the tune on ``(T, 3, H, W)`` frames in [-1, 1]: the mean squared error, plus for the
    perceptual tune ``LPIPS_WEIGHT`` × LPIPS (measured better on PSNR, MS-SSIM and LPIPS alike than the training's
    L1 + 0.4·LPIPS; docs/MODELS.md)."""

    def __init__(self, tune: str):
        super().__init__()
        self.tune = tune
        self.lpips = None
        if tune == "perceptual":
            from vtok.codec.models.perceptual import build_lpips, lpips_backbone_path

            if lpips_backbone_path() is None:
                raise FileNotFoundError("`tune=perceptual` searches with LPIPS, whose AlexNet backbone is not here: "
                                        "set VTOK_LPIPS_BACKBONE to its safetensors file, or use `tune=psnr`")
            self.lpips = build_lpips()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = F.mse_loss(y, x)
        if self.lpips is None:
            return d
        # LPIPS of a few frames at a time, recomputed in the backward pass: its activations in bounded memory
        per_frame = torch.cat([checkpoint(self.lpips, y[i:i + 4], x[i:i + 4], use_reentrant=False)
                               for i in range(0, len(x), 4)])
        return d + LPIPS_WEIGHT * per_frame.mean()


@functools.lru_cache(maxsize=None)
def distortion_of(tune: str) -> Distortion:
    """The tune's distortion, built once per process (LPIPS loads its network)."""
    return Distortion(tune)


def search_latent(tok, prior, distortion: Distortion, z: torch.Tensor, frames: torch.Tensor, bits: int,
                  search: Search) -> torch.Tensor:
    """The searched latent of one GOP: ``z (1, D, T', h, w)`` the encoder's (its signs are the start), ``frames
    (T, 3, 8h, 8w)`` the GOP's uint8 frames at the coded size, padded as the encoder saw them (``gop_frames``);
    the codes are the quantizer's of the searched latent (straight through), of which the first ``bits`` are coded.
    Returns a new ``z`` whose codes are the bits to code."""
    z = z.detach().clone()
    if not search.steps:
        return z
    frozen = [p for p in list(tok.decoder.parameters()) + list(prior.parameters()) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        t_lat, h, w = z.shape[2:]
        for t0 in range(0, t_lat, WINDOW_FRAMES):
            t1 = min(t_lat, t0 + WINDOW_FRAMES)
            for y0 in range(0, h, TILE):
                for x0 in range(0, w, TILE):
                    _search_window(tok, prior, distortion, z, frames, bits, search, (t0, t1),
                                   (y0, min(h, y0 + TILE)), (x0, min(w, x0 + TILE)))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return z


def _search_window(tok, prior, distortion, z, frames, bits, search, ts, ys, xs) -> None:
    """Adam steps on ``z[:, :bits, t0:t1, y0:y1, x0:x1]`` (in place) against the pixels of those latents."""
    (t0, t1), (y0, y1), (x0, x1) = ts, ys, xs
    c0 = max(t0 - 1, 0)  # one latent frame before the window for temporal context (fixed)
    a0, a1 = max(y0 - MARGIN, 0), min(z.shape[3], y1 + MARGIN)
    b0, b1 = max(x0 - MARGIN, 0), min(z.shape[4], x1 + MARGIN)
    ctx = z[:, :, c0:t1, a0:a1, b0:b1].clone()
    inner = (slice(None), slice(None), slice(t0 - c0, None), slice(y0 - a0, y1 - a0), slice(x0 - b0, x1 - b0))
    var = ctx[inner].clone().requires_grad_(True)
    opt = torch.optim.Adam([var], lr=search.lr)
    # output frames of latent t: 0 for t = 0, else 4(t-1)+1 .. 4t; those of the window's own latents
    f_lo, f_hi = (1 + 4 * (t0 - 1) if t0 else 0), 1 + 4 * (t1 - 1)
    out_lo = 1 if t0 else 0  # the context latent frame decodes to one frame, as a clip's first
    target = frames[f_lo:f_hi, :, 8 * y0:8 * y1, 8 * x0:8 * x1].float().div_(127.5).sub_(1)
    window_pixels = 4 * 64 * (t1 - c0) * (a1 - a0) * (b1 - b0)  # about the pixels the window's tokens code
    keep = torch.tensor([bits])
    # activations recomputed block by block (decoder) and step by step (prior) in the backward pass: the same
    # gradients in a fraction of the memory
    decode = functools.partial(tok.decoder, checkpointed=True) if tok.cfg.arch == "tae" else tok.decoder
    for _ in range(search.steps):
        full = ctx.clone()
        full[inner] = var
        codes = tok.quantizer(full).codes * tok.bit_mask(keep, full.new_empty(1, tok.bits))  # straight through
        y = decode(codes)[0].transpose(0, 1)  # (T, 3, H, W)
        y = y[out_lo:out_lo + len(target), :, 8 * (y0 - a0):8 * (y1 - a0), 8 * (x0 - b0):8 * (x1 - b0)]
        rate = prior.video_rate(codes[:, :prior.cfg.bits], keep, checkpointed=True)[0]
        loss = distortion(target, y) + search.lam * rate / window_pixels
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        z[:, :, t0:t1, y0:y1, x0:x1] = var.detach()


def searched_tokens(tok, prior, pieces: list, bits: int, hold: float, search: Search) -> np.ndarray:
    """``VideoTokenizer.encode_pieces``' tokens after the search: the encoder's latent, its signs as the hold chose
    them, searched through the frozen decoder and the float prior ``prior`` (``search_latent``)."""
    if not tok.quantizer.holds:
        raise ValueError(f"a searching preset needs sign-bit tokens (lfq), not {tok.cfg.quantizer!r}")
    with torch.inference_mode():
        z = torch.cat(list(tok.latents(pieces)), 2)
        idx = tok.quantizer.held_indices(z, None, hold)[0] if hold else tok.quantizer(z).indices
        start = tok.quantizer.indices_to_codes(idx)[:, :z.shape[1]] * z.abs().clamp_min(1e-3)
    z = search_latent(tok, prior, distortion_of(search.tune), start, gop_frames(pieces), bits, search)
    # the hold once more: a bit the search left within ±hold of zero keeps its previous latent frame's value
    with torch.inference_mode():
        idx = (tok.quantizer.held_indices(z, None, hold)[0] if hold else tok.quantizer(z).indices)[0]
    return (idx & ((1 << bits) - 1) if bits < tok.bits else idx).cpu().numpy()


def gop_frames(pieces) -> torch.Tensor:
    """The GOP's uint8 pieces → uint8 ``(T, 3, H, W)`` frames (a window turns its own into floats), padded as the
    encoder pads them (edge pixels to multiples of 8, the last frame repeated to ``1 + 4k``)."""
    video = np.concatenate(list(pieces))
    t, h, w = video.shape[:3]
    tp, hp, wp = padded_size(t, h, w)
    video = np.pad(video, ((0, tp - t), (0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    return torch.from_numpy(video).permute(0, 3, 1, 2)
