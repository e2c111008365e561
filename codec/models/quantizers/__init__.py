"""Quantizers, one per file, and the one name table that selects them (``vtok train --quantizer NAME``)."""

from vtok.codec.models.quantizers.base import Quantizer, QuantizerOutput, codebook_usage
from vtok.codec.models.quantizers.fq import FactorizedQuantizer
from vtok.codec.models.quantizers.gsq import GroupedSphericalQuantizer
from vtok.codec.models.quantizers.lfq import LookupFreeQuantizer
from vtok.codec.models.quantizers.regvq import RegularizedVectorQuantizer
from vtok.codec.models.quantizers.rlfq import ResidualLookupFreeQuantizer
from vtok.codec.models.quantizers.vq import VectorQuantizer

QUANTIZERS = {
    "lfq": LookupFreeQuantizer,
    "rlfq": ResidualLookupFreeQuantizer,
    "vq": VectorQuantizer,
    "fq": FactorizedQuantizer,
    "gsq": GroupedSphericalQuantizer,
    "regvq": RegularizedVectorQuantizer,
}


def build_quantizer(name: str, **kwargs) -> Quantizer:
    """Build the quantizer registered under ``name`` (see ``QUANTIZERS``)."""
    try:
        cls = QUANTIZERS[name]
    except KeyError:
        raise ValueError(f"unknown quantizer {name!r}; choose one of {', '.join(sorted(QUANTIZERS))}") from None
    try:
        return cls(**kwargs)
    except TypeError as e:  # an argument this quantizer does not take
        raise ValueError(f"quantizer {name!r}: {e}") from None


__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput", "FactorizedQuantizer", "GroupedSphericalQuantizer",
           "LookupFreeQuantizer", "RegularizedVectorQuantizer",
           "ResidualLookupFreeQuantizer", "VectorQuantizer", "build_quantizer", "codebook_usage"]
