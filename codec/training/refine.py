"""Growing refinement bits onto a trained sign-bit tokenizer (``vtok train --init MODEL --refine-bits N``).

The base model's encoder stays as it is (so its tokens are the first bits of the new ones, and its files stay
decodable: ``base_family`` in the new weights' metadata names the family they came from); a residual LFQ stage
(``codec/models/quantizers/rlfq.py``) adds one bit to each of the ``N`` channels whose residual after the sign is
largest, and the decoder gets a branch that reads them, starting at zero, so that step 0 decodes as the base model.
The decoder then learns to read them (``--freeze-encoder``; arXiv 2406.07548 and 2203.01941 for the stacked stages).

``with_enhancement`` (``--enhance [--enhance-base MODEL]``) gives such a model's tokens that carry refinement bits
a decoder start of their own (``codec.models.tae.RefinementPath``), the others the decoder of ``MODEL`` (the model
the bits grew on); trained alone (``--refine-only``), it leaves every prefix of the sign bits decoding exactly as
``MODEL`` does.
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


def with_enhancement(model: VideoTokenizer, base: VideoTokenizer | None = None) -> VideoTokenizer:
    """``model`` (with refinement bits) whose tokens that carry refinement bits take a decoder start of their own
    (``RefinementPath``, from ``model``'s own start), the others the start of ``base``'s decoder; the rest of the
    decoder from ``base`` when given (a sign-bit model of the family the refinement bits grew on, ``base_family``),
    else from ``model``."""
    if not model.refine_bits:
        raise ValueError("a refinement path reads refinement bits: grow them first (`--refine-bits`)")
    if base is not None and base.family_id != model.meta.get("base_family"):
        raise ValueError(f"the base model's family {base.family_id} is not the one the refinement bits grew on "
                         f"({model.meta.get('base_family')})")
    was_training = model.training
    grown = VideoTokenizer(dataclasses.replace(model.cfg, dec_enhance=1))
    own = model.state_dict()
    start = ("decoder.dequant.", "decoder.residual.", "decoder.latent.", "decoder.refine.")
    state = {k: v for k, v in own.items() if not k.startswith("decoder.residual.")}
    state.update({"decoder.enhance." + k[8:]: v for k, v in own.items() if k.startswith(start)})
    if base is not None:
        state.update({k: v for k, v in base.state_dict().items() if k.startswith("decoder.")})
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"weights do not fit the enhanced tokenizer: {(unexpected + missing)[:5]}")
    grown.meta = dict(model.meta)
    return grown.to(model._device()).train(was_training)
