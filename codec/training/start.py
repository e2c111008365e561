"""Where a tokenizer training run starts: fresh from TAEF2 (and the distilled stem and head), from trained weights
(``--init``), an image model inflated to video, a decoder grown by refine blocks, a model grown by refinement bits,
and the token prior that trains along with the rate term.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer, prior_path
from vtok.codec.prior import IntegerPrior, PriorConfig, TokenPrior
from vtok.codec.training.data import ClipSampler


def initial_model(tcfg, mcfg: TokenizerConfig | None, state_path: Path | None, cache) -> VideoTokenizer:
    """The model a run starts from (``tcfg``: its ``TrainConfig``): ``tcfg.init``'s weights inflated, grown and
    reweighed as asked, or a fresh ``mcfg`` model (``arch="tae"``: from TAEF2 unless the run resumes).
    ``state_path``: the run's checkpoint when it resumes (None otherwise); ``cache()``: the training cache's folder
    (built on first call; refinement bits measure their channels on it)."""
    if not tcfg.init:
        model = VideoTokenizer(mcfg or TokenizerConfig())  # a bad configuration fails here, before any work
        if model.cfg.arch == "tae" and not (state_path is not None and state_path.exists()):
            start_from_taef2(model, tcfg.taef2 or None, tcfg.stem_head or None)
        return model
    model = load_tokenizer(tcfg.init).train()
    if model.decode_only:
        raise ValueError(f"`init={tcfg.init}`: these weights decode only (no encoder); start from a full model")
    if tcfg.inflate:
        inflate_from_image(model)
    if tcfg.dec_blocks >= 0:
        model = grow_decoder(model, tcfg.dec_blocks)
    if mcfg is not None and mcfg.quantizer_args:
        reweigh_quantizer(model, mcfg.quantizer_args)
    if tcfg.refine_bits:
        model = refined(model, tcfg, state_path, cache())
    if tcfg.enhance:
        from vtok.codec.training.refine import with_enhancement
        model = with_enhancement(model, load_tokenizer(tcfg.enhance_base) if tcfg.enhance_base else None)
    return model


def inflate_from_image(model: VideoTokenizer) -> None:
    """Turn an image-trained (one-frame) tokenizer into a video tokenizer that starts as a frame-wise one.

    A one-frame clip sees every temporal tap of a causal kernel applied to the same (replicated) frame, so only their
    sum was learned: that sum moves to the last tap (the current frame), the others start at zero (MAGVIT-v2's
    inflation). Temporal depth-to-space layers only trained the half of their channels that makes the kept frame; the
    other half is copied from it, so a latent frame first decodes to repeated frames.
    """
    from vtok.codec.models.layers import CausalConv3d

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CausalConv3d) and m.kernel[0] > 1:
                w = m.conv.weight
                s = w.sum(2)
                w.zero_()
                w[:, :, -1] = s
        for up in (model.decoder.up_t1, model.decoder.up_t2):
            w, b = up.conv.weight, up.conv.bias
            c = w.shape[0] // 2
            w[:c] = w[c:]
            b[:c] = b[c:]


def start_from_taef2(model: VideoTokenizer, taef2=None, stem_head=None) -> None:
    """A fresh ``arch="tae"`` tokenizer: TAEF2's 1/4 and 1/8 stages, and the distilled stem and head if given."""
    from vtok.codec.training.distill import load_stem_head
    from vtok.codec.models.tae import init_from_taef2

    init_from_taef2(model.encoder, model.decoder, taef2)
    if stem_head:
        stem, head = load_stem_head(stem_head)
        model.encoder.stem.load_state_dict(stem, strict=True)
        model.decoder.head.load_state_dict(head, strict=True)


def grow_decoder(model: VideoTokenizer, blocks: int) -> VideoTokenizer:
    """The same tokenizer with ``blocks`` refine blocks in its decoder; the new ones start as the identity."""
    if blocks == model.cfg.dec_blocks:
        return model
    if blocks < model.cfg.dec_blocks:
        raise ValueError(f"the model has {model.cfg.dec_blocks} decoder refine blocks; cannot shrink to {blocks}")
    grown = VideoTokenizer(dataclasses.replace(model.cfg, dec_blocks=blocks))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("decoder.refine.") for k in missing):
        raise ValueError(f"weights do not fit the grown decoder: {(unexpected + missing)[:5]}")
    return grown.train(model.training)


def refined(model: VideoTokenizer, tcfg, state_path: Path | None, cache: Path) -> VideoTokenizer:
    """The init model with ``tcfg.refine_bits`` refinement bits (``training/refine.py``): as the run's checkpoint
    has them when it resumes (its stored config), else measured on 32 training clips."""
    from vtok.codec.training.refine import with_refinement

    if state_path is not None and state_path.exists():
        from safetensors import safe_open

        with safe_open(str(state_path), framework="pt") as f:
            cfg = TokenizerConfig.from_json(f.metadata()["config"])
        grown = VideoTokenizer(cfg)
        grown.meta = {**model.meta, "base_family": model.family_id}
        return grown.train()
    sampler = ClipSampler(cache, tcfg.frames, tcfg.crop, tcfg.max_source_share, seed=12345)
    return with_refinement(model, tcfg.refine_bits, (sampler.sample(4) for _ in range(8)))


def reweigh_quantizer(model: VideoTokenizer, args: dict) -> None:
    """``--quantizer-arg`` with ``--init``: the loaded model's quantizer takes new loss weights (``*_weight``), recorded
    in its config; any other argument would change what the weights mean, so it is refused."""
    for key, value in args.items():
        if not key.endswith("_weight") or not hasattr(model.quantizer, key):
            raise ValueError(f"`quantizer_arg` {key}: with `init` only the quantizer's loss weights can change "
                             f"({', '.join(k for k in vars(model.quantizer) if k.endswith('_weight')) or 'none'})")
        setattr(model.quantizer, key, float(value))
        model.cfg.quantizer_args = {**model.cfg.quantizer_args, key: float(value)}


def start_prior(model: VideoTokenizer, tcfg) -> TokenPrior:
    """The float token prior trained with the tokenizer (``rate_weight``): from ``prior_init``, else from the prior
    beside ``init``; a fresh one (4 layers × 96 channels) when there is neither."""
    path = tcfg.prior_init
    if not path and tcfg.init:
        beside = prior_path(tcfg.init)
        path = str(beside) if beside.is_file() else ""
    if path:
        prior = TokenPrior.from_integer(IntegerPrior.load(path))
        if prior.cfg.bits != model.bits:
            raise ValueError(f"prior {path} codes {prior.cfg.bits}-bit tokens, the tokenizer makes {model.bits}")
        return prior
    return TokenPrior(PriorConfig(bits=model.bits, group_bits=model.group_bits, channels=96, layers=4))


def param_groups(model: torch.nn.Module, new_lr_mult: float) -> list[dict]:
    """The trainable parameters, those of a grown refinement branch (``decoder.residual``) in a group of their own
    with ``new_lr_mult`` times the learning rate (``toolkit.set_lr``)."""
    branch = ("decoder.residual.",)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    new = [p for n, p in named if n.startswith(branch)]
    old = [p for n, p in named if not n.startswith(branch)]
    return ([{"params": old}] if old else []) + ([{"params": new, "mult": new_lr_mult}] if new else [])
