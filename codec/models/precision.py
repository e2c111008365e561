"""The decoder's arithmetic: float32 (the reference) or bfloat16 (``vtok decompress --precision``).

The tokenizer's decoder can run its convolutions in bfloat16 through oneDNN (``torch.autocast``), about 1.8× as fast
on a CPU with native bfloat16 instructions (AVX-512 BF16, AMX) and a picture within a few levels of float32's
(docs/MODELS.md, "Decoding in bfloat16"). Only the decoder: the encoder stays float32 so that tokens, and so files,
are the same whatever decodes them, and the token prior is integer arithmetic either way. The last layer's output
turns into bytes in float32.

``auto`` is bfloat16 where the CPU has native bfloat16 instructions and float32 elsewhere (where bfloat16 would be
emulated, and slower).
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags)) and torch.backends.mkldnn.is_available()


def resolved(precision: str, device: torch.device | str = "cpu") -> str:
    """``precision`` (one of ``PRECISIONS``) as the decoder will run it on ``device``: ``fp32`` or ``bf16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if torch.device(device).type == "cpu" and native_bf16() else "fp32"
    return precision


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The context the decoder runs in at a resolved ``precision``."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


def for_precision(module: nn.Module, precision: str) -> nn.Module:
    """``module`` to run at a resolved ``precision`` under ``autocast``: itself for fp32; for bf16 a copy whose
    convolutions hold their weights and biases in bfloat16 already — the numbers autocast computes with (it rounds
    them alike), without casting every weight at every piece (autocast's cache ends with each ``run_pieces`` step).
    The copy is kept on the module until a parameter of it changes (training, ``.to``)."""
    if precision != "bf16":
        return module
    key = tuple((p.data_ptr(), p._version) for p in module.parameters())
    cached = module.__dict__.get("_bf16_copy")
    if cached is None or cached[0] != key:
        module.__dict__.pop("_bf16_copy", None)
        twin = copy.deepcopy(module).requires_grad_(False)
        for m in twin.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                for p in m.parameters(recurse=False):
                    p.data = p.data.to(torch.bfloat16)
        cached = module.__dict__["_bf16_copy"] = (key, twin)
    return cached[1]


def run_pieces(precision: str, device, pieces):
    """The items of the generator ``pieces``, each one computed under ``autocast``, which is entered only around the
    generator's own steps (so that it never covers the caller's code between them)."""
    while True:
        with autocast(precision, device):
            try:
                item = next(pieces)
            except StopIteration:
                return
        yield item
