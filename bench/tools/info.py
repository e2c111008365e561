"""Human- and machine-readable reports of coded files (``vtok info``)."""

from __future__ import annotations

import json

from vtok.bitstream.errors import DamagedInput
from vtok.bitstream.info import file_info as vtok_info


def print_info(path, as_json: bool = False, log=print) -> dict:
    """Print what ``path`` holds; a damaged file's intact part and each damaged stretch, then ``DamagedInput``."""
    info = vtok_info(path)
    if as_json:
        log(json.dumps(info, indent=1))
    else:
        _print_fields(info, log)
    if info["damage"]:
        raise DamagedInput(f"{path} is damaged: {len(info['damage'])} damaged stretch(es) listed above; the rest "
                           f"is intact")
    return info


def _print_fields(info: dict, log) -> None:
    for k in ("width", "height", "coded_width", "coded_height", "frames", "fps", "bits_per_token", "model_bits", "gop", "coder", "perfect",
              "prob_bits", "rate", "pixel_format", "model_id", "format_version", "colour", "file_bytes", "video_bytes",
              "audio_bytes", "payload_bits"):
        log(f"{k:>20}: {info[k]}")
    for i, a in enumerate(info["audio_streams"]):
        log(f"{'audio ' + str(i):>20}: {a['codec']}, {a['sample_rate']} Hz, {a['channels']} ch, "
            f"{a['packet_bytes']} bytes")
    log(f"{'cross_entropy_bits':>20}: {info['cross_entropy_bits']:.1f} (coder overhead "
        f"{100 * (info['payload_bits'] / max(info['cross_entropy_bits'], 1e-9) - 1):.2f} %)")
    log(f"{'bpp':>20}: {info['bpp']:.5f} (video only)")
    total = info["file_bytes"] * 8 / max(1, info["intact_frames"] * info["width"] * info["height"])
    log(f"{'bpp with audio':>20}: {total:.5f}")
    log(f"{'GOP units':>20}: {len(info['gop_units'])}")
    for d in info["damage"]:
        log(f"{'damaged':>20}: bytes {d['start']}-{d['end']}: {d['reason']}")
