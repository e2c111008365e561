"""Bjøntegaard delta rate and delta quality (G. Bjøntegaard, VCEG-M33, 2001; VCEG-AL22 for the piecewise cubic form).

Computed with the ``bjontegaard`` package using ``pchip`` interpolation, as JVET's common test conditions do
(JVET-T2010). For LPIPS, lower is better: it is negated before interpolation, and the delta quality is reported back
in LPIPS units (negative = better).
"""

from __future__ import annotations

import math
import warnings

from vtok.bench.analysis.results import curves

METRICS = {"psnr": 1, "ms_ssim": 1, "lpips": -1}  # +1: higher is better
METHOD = "pchip"


def bd(rate_a, q_a, rate_t, q_t, higher_is_better: bool = True) -> tuple[float, float]:
    """(BD-rate in %, BD-quality in the metric's units) of test against anchor; NaN where the curves do not overlap
    or have fewer than 4 points."""
    import bjontegaard

    if min(len(rate_a), len(rate_t)) < 4:
        return math.nan, math.nan
    s = 1 if higher_is_better else -1
    qa, qt = [s * q for q in q_a], [s * q for q in q_t]
    if min(max(qa), max(qt)) <= max(min(qa), min(qt)):
        return math.nan, math.nan  # no quality overlap: the rate difference is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = bjontegaard.bd_rate(rate_a, qa, rate_t, qt, method=METHOD, require_matching_points=False)
            d = bjontegaard.bd_psnr(rate_a, qa, rate_t, qt, method=METHOD, require_matching_points=False)
        except (ValueError, ZeroDivisionError):
            return math.nan, math.nan
    return float(r), float(s * d)


def envelope(points: list, higher_is_better: bool = True) -> list:
    """The points of a curve (sorted by rate) that no cheaper point matches in quality: a codec with several ways
    to a rate (bits or picture size, QP at several sizes) is judged by its best one, as a streaming ladder is."""
    out, best = [], -math.inf
    for p in points:
        q = p[1] if higher_is_better else -p[1]
        if q > best:
            out.append(p)
            best = q
    return out


def bd_table(doc: dict, anchor: str) -> list[dict]:
    """BD-rate / BD-quality of every codec against ``anchor`` for each metric (rows: codec × metric), each curve
    reduced to its ``envelope``."""
    rows = []
    for metric, sign in METRICS.items():
        cv = {c: envelope(pts, sign > 0) for c, pts in curves(doc, metric).items()}
        if anchor not in cv:
            continue
        ra, qa = [r for r, _, _ in cv[anchor]], [q for _, q, _ in cv[anchor]]
        for codec, pts in cv.items():
            if codec == anchor:
                continue
            r, d = bd(ra, qa, [p[0] for p in pts], [p[1] for p in pts], sign > 0)
            rows.append({"codec": codec, "anchor": anchor, "metric": metric, "bd_rate_percent": r, "bd_quality": d,
                         "interpolation": METHOD})
    return rows
