"""Convolutions through oneDNN's fast paths on the CPU, with the separate ops' numbers: a convolution fused with the
sum and ReLU after it (``conv_relu``) and weights held channels-last (``channels_last``); the tokenizer's layers
(``codec/models/layers.py``, ``tae.py``) run on them (docs/MODELS.md, "Decoding speed")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_POINTWISE = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
_POINTWISE_INTO = getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)  # writes over its "other"


def conv_relu(layer: nn.Conv2d, x: torch.Tensor, add: torch.Tensor | None = None, relu: bool = True,
              into: bool = False) -> torch.Tensor:
    """``relu(layer(x) + add)`` (``add`` and ``relu`` optional); ``into``: written over ``add`` and returned (inference
    only). In float32 inference on the CPU it is one oneDNN convolution with the sum and the ReLU as post-ops
    (``torch.ops.mkldnn._convolution_pointwise``, or its in-place twin for ``into``), which spares the passes over
    memory of separate ops: a 1/4-stage block on five 640×360 frames, channels-last, 60 → 41 ms (docs/MODELS.md,
    "Decoding speed"). The separate ops' float32 numbers, bit for bit, in their memory layout (the output's layout
    follows ``x`` and the weight as the convolution's own does, and oneDNN's order of summation depends on the
    layout; tested); elsewhere (gradients, bfloat16 autocast, another device or a build without oneDNN) it is the
    separate ops."""
    w = layer.weight
    if into and (add is None or add.requires_grad):
        raise ValueError("conv_relu writes over add only in inference")
    if (_POINTWISE is not None and (_POINTWISE_INTO is not None or not into) and x.device.type == "cpu"
            and x.dtype == w.dtype == torch.float32 and layer.padding_mode == "zeros"
            and not isinstance(layer.padding, str) and (add is None or add.dtype == torch.float32)
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                                  or (add is not None and add.requires_grad)))):
        args = (w, layer.bias, list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups)
        if add is None:
            return _POINTWISE(x, *args, "relu" if relu else "none", [], None)
        if into:
            return _POINTWISE_INTO.binary(add, x, *args, "add", None, "relu" if relu else None, [], None)
        return _POINTWISE.binary(x, add, *args, "add", None, "relu" if relu else None, [], None)
    y = layer(x)
    if add is not None:
        y = add.add_(y) if into else y + add
    return (y.relu_() if into else F.relu(y)) if relu else y


def channels_last(module: nn.Module) -> nn.Module:
    """Hold ``module``'s convolution weights channels-last (NHWC), oneDNN's fast layout on the CPU: the decoder so
    runs 1.1× (float32) to 1.3× (bfloat16) as fast at 640×360 (docs/MODELS.md, "Decoding speed"). The same
    numbers up to the order of a sum; weights load, save and hash as before (``load_state_dict`` keeps the layout,
    ``.contiguous()`` before bytes)."""
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return module
