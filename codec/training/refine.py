"""Growing refinement bits onto a trained sign-bit tokenizer (``vtok train --init MODEL --refine-bits N``).

The base model's encoder stays as it is (so its tokens are the first bits of the new ones, and its files stay
decodable: ``base_family`` in the new weights' metadata names the family they came from); a residual LFQ stage
(``codec/models/quantizers/rlfq.py``) adds one bit to each of the ``N`` channels whose residual after the sign is
largest, and the decoder gets a branch that reads them, starting at zero, so that step 0 decodes as the base model.
The decoder then learns to read them (``--freeze-encoder``; arXiv 2406.07548 and 2203.01941 for the stacked stages).
"""

from __future__ import annotations

import dataclasses

import torch

from vtok.codec.models.tokenizer import VideoTokenizer


@torch.no_grad()
def channel_statistics(model: VideoTokenizer, clips) -> tuple[torch.Tensor, torch.Tensor]:
    """Per latent channel, over training clips (an iterable of ``(B, 3, T, H, W)`` batches in [-1, 1]): the mean
    ``|z|`` (the refinement split ``s``) and the mean ``|z − s·sign(z)|`` that a refinement bit would halve."""
    zs = torch.cat([model.encoder(x).movedim(1, -1).reshape(-1, model.quantizer.dim) for x in clips])
    s = zs.abs().mean(0)
    residual = (zs - s * torch.where(zs > 0, 1.0, -1.0)).abs().mean(0)
    return s, residual


def with_refinement(model: VideoTokenizer, extra: int, clips) -> VideoTokenizer:
    """``model`` (LFQ tokens) with ``extra`` refinement bits: the channels of largest residual (measured on
    ``clips``, see ``channel_statistics``) in decreasing order. Every weight carries over; the new decoder branch
    starts at zero."""
    if model.cfg.quantizer != "lfq" or model.cfg.arch != "tae":
        raise ValueError(f"refinement bits grow on an LFQ tokenizer of arch 'tae', not {model.cfg.quantizer!r} / "
                         f"{model.cfg.arch!r}")
    if not 1 <= extra <= min(model.bits, 62 - model.bits):
        raise ValueError(f"`refine_bits` must be in 1..{min(model.bits, 62 - model.bits)}, got {extra}")
    was_training = model.training
    s, residual = channel_statistics(model.eval(), clips)
    order = torch.argsort(residual, descending=True)[:extra].tolist()
    args = {**model.cfg.quantizer_args, "base_bits": model.bits, "refine": order,
            "scales": [round(float(s[c]), 4) for c in order]}
    cfg = dataclasses.replace(model.cfg, quantizer="rlfq", bits=model.bits + extra, group_bits=model.group_bits,
                              quantizer_args=args)
    grown = VideoTokenizer(cfg)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or missing != ["decoder.residual.weight"]:
        raise ValueError(f"weights do not fit the refined tokenizer: {(unexpected + missing)[:5]}")
    grown.meta = {**model.meta, "base_family": model.family_id}
    return grown.to(model._device()).train(was_training)
