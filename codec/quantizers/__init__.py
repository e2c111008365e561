"""Quantizers, one per file, and the one name table that selects them."""

from codec.quantizers.base import Quantizer, QuantizerOutput
from codec.quantizers.lfq import LookupFreeQuantizer

QUANTIZERS = {
    "lfq": LookupFreeQuantizer,
}


def build_quantizer(name: str, **kwargs) -> Quantizer:
    """Build the quantizer registered under ``name`` (see ``QUANTIZERS``)."""
    try:
        cls = QUANTIZERS[name]
    except KeyError:
        raise ValueError(f"unknown quantizer {name!r}; choose one of {', '.join(sorted(QUANTIZERS))}") from None
    return cls(**kwargs)


__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput", "LookupFreeQuantizer", "build_quantizer"]
