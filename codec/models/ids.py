"""The hash behind a tokenizer's ids (``VideoTokenizer.model_id``, ``family_id``, ``decoder_id``): its config and
weights, as 16 hex digits."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_hash(model: nn.Module, config: str, decoder: bool | None) -> str:
    """16 hex digits of ``config`` and ``model``'s weights: all (``decoder`` None), the decoder's (True), or all but
    the decoder's (False). Weights are hashed as float16, so a model and its fp16 export hash alike."""
    h = hashlib.sha256(config.encode())
    for k, v in sorted(model.state_dict().items()):
        if decoder is None or k.startswith("decoder.") == decoder:
            h.update(k.encode())
            # + 0.0: a weight of -0.0 and one of +0.0 compute alike, so they hash alike
            h.update((v.detach().cpu() + 0.0 if v.is_floating_point() else v.detach().cpu()).to(torch.float16)
                     .contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
