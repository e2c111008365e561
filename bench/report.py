"""Human- and machine-readable reports of coded files (``vtok info``)."""

from __future__ import annotations

import json

from codec.pipeline import vtok_info


def print_info(path, as_json: bool = False, log=print) -> dict:
    info = vtok_info(path)
    if as_json:
        log(json.dumps(info, indent=1))
        return info
    for k in ("width", "height", "coded_width", "coded_height", "frames", "fps", "bits_per_token", "model_bits", "gop", "coder", "perfect",
              "prob_bits", "rate", "pixel_format", "model_id", "file_bytes", "payload_bits"):
        log(f"{k:>20}: {info[k]}")
    log(f"{'cross_entropy_bits':>20}: {info['cross_entropy_bits']:.1f} (coder overhead "
        f"{100 * (info['payload_bits'] / max(info['cross_entropy_bits'], 1e-9) - 1):.2f} %)")
    log(f"{'bpp':>20}: {info['bpp']:.5f}")
    log(f"{'GOP units':>20}: {len(info['gop_units'])}")
    return info
