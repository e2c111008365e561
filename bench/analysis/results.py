"""The one results schema that vtok and every anchor write; BD-rate, tables and plots read only this.

A results document::

    {"schema": "vtok-bench/1", "created": ISO time, "protocol": {...}, "codecs": {name: {"settings": ..., "version": ...}},
     "points": [ {"clip", "codec", "point", "settings", "version", "frames", "width", "height", "bytes", "bpp",
                  "psnr", "psnr_yuv", "ms_ssim", "lpips", "encode_s", "decode_s",
                  "per_frame": {"psnr": [...], "ms_ssim": [...], "lpips": [...]}} ]}

``point`` names the operating point within a codec's curve (a QP for anchors, a bit count for vtok).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from vtok.bitstream.errors import VtokError

SCHEMA = "vtok-bench/1"
POINT_FIELDS = {"clip": str, "codec": str, "point": (int, float, str), "settings": dict, "version": str, "frames": int,
                "width": int, "height": int, "bytes": int, "bpp": float, "psnr": float, "psnr_yuv": float,
                "ms_ssim": (float, type(None)), "lpips": (float, type(None)), "encode_s": float, "decode_s": float,
                "per_frame": dict}
CSV_FIELDS = ["clip", "codec", "point", "frames", "width", "height", "bytes", "bpp", "psnr", "psnr_yuv", "ms_ssim",
              "lpips", "encode_s", "decode_s"]


class ResultsError(VtokError, ValueError):
    """A results document does not follow the schema."""


def validate(doc: dict) -> dict:
    """Raise ResultsError unless ``doc`` follows the schema; returns it."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ResultsError(f"not a {SCHEMA} results document")
    for key in ("protocol", "codecs", "points"):
        if key not in doc:
            raise ResultsError(f"results document lacks {key!r}")
    for i, p in enumerate(doc["points"]):
        for k, t in POINT_FIELDS.items():
            if k not in p:
                raise ResultsError(f"point {i} lacks {k!r}")
            ok = isinstance(p[k], t) or (t is float and isinstance(p[k], int)) or \
                (isinstance(t, tuple) and float in t and isinstance(p[k], int))
            if not ok:
                raise ResultsError(f"point {i}: {k!r} has type {type(p[k]).__name__}")
        if p["codec"] not in doc["codecs"]:
            raise ResultsError(f"point {i}: codec {p['codec']!r} is not described under 'codecs'")
    return doc


def load(path) -> dict:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: cannot read results ({e})") from None
    return validate(doc)


def save(doc: dict, out_dir) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.csv`` into ``out_dir``."""
    validate(doc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for p in doc["points"]:
            w.writerow(p)
    return out / "results.json", out / "results.csv"


def curves(doc: dict, metric: str) -> dict:
    """Per codec, the mean over clips of (bpp, metric) at each operating point, sorted by bpp.

    Only points present for every clip of that codec are used, so each curve averages the same clips.
    """
    by = {}
    clips_of = {}
    for p in doc["points"]:
        clips_of.setdefault(p["codec"], set()).add(p["clip"])
        if p.get(metric) is None:
            continue
        by.setdefault(p["codec"], {}).setdefault(str(p["point"]), []).append((p["bpp"], p[metric]))
    out = {}
    for codec, pts in by.items():
        n = len(clips_of[codec])
        rows = [(sum(b for b, _ in v) / n, sum(m for _, m in v) / n, k) for k, v in pts.items() if len(v) == n]
        out[codec] = sorted(rows)
    return out
