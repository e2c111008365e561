"""The rate-distortion benchmark (``vtok bench``): vtok and the anchors on the same clips, one results schema.

Every codec is a peer in ``bench.codecs`` (vtok, x265, VVC). Anchors run as real file round trips through ffmpeg
(``bench.anchors``); vtok through its in-memory codec, which returns the bytes of the ``.vtok`` file it would write,
with one real ``vtok compress`` / ``vtok decompress`` file round trip per run checked against it. Metrics are computed in Python on
the decoded frames against the source frames (``bench.metrics``). Anchor results are cached by (clip content hash,
codec, settings, encoder version), so reruns only compute what changed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench import results
from bench.anchors import ANCHORS
from bench.codecs import CODECS, AnchorSettings, VtokSettings, build_codec
from bench.bdrate import bd_table
from bench.datasets import eval_clips, mcl_jcv_files
from bench.metrics import LPIPSMetric, msssim_frames, psnr_frames, psnr_yuv_frames
from bench.plot import plot_rd
from codec.video_io import read_video

DEFAULT_QPS = (22, 27, 32, 37, 42, 47)


def _metrics(ref: np.ndarray, dec: np.ndarray, lpips: LPIPSMetric | None) -> dict:
    pf = {"psnr": psnr_frames(ref, dec).tolist(), "psnr_yuv": psnr_yuv_frames(ref, dec).tolist()}
    if min(ref.shape[1:3]) >= 161:
        pf["ms_ssim"] = msssim_frames(ref, dec).tolist()
    if lpips is not None:
        pf["lpips"] = lpips.frames(ref, dec).tolist()
    mean = {k: float(np.mean(v)) for k, v in pf.items()}
    return {"psnr": mean["psnr"], "psnr_yuv": mean["psnr_yuv"], "ms_ssim": mean.get("ms_ssim"),
            "lpips": mean.get("lpips"), "per_frame": pf}


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def collect_clips(data=None, mcl_jcv=None, frames: int | None = 33, size=(640, 360), keep_size: bool = False):
    """``(name, frames)`` for the chosen clips: an MCL-JCV folder, files/folders, or the shared eval set."""
    if mcl_jcv:
        files = mcl_jcv_files(mcl_jcv)
        return [(f.name, read_video(f, max_frames=frames, resize=None if keep_size else size)) for f in files]
    return list(eval_clips(data, frames, None if keep_size else size))


def run_bench(data=None, mcl_jcv=None, codecs=("vtok", "x265", "vvc"), qps=DEFAULT_QPS, vtok_rates=None, frames: int | None = 33, size=(640, 360), keep_size: bool = False,
              out_dir="bench-out", jobs: int = 1, config: str = "low-delay", preset: str = "medium",
              intra_period: int | None = None, model=None, anchor: str = "x265", cache_dir=None, lpips: bool = True,
              progress: bool = True, anchor_ladder=(), log=print) -> dict:
    """Run the benchmark, write ``results.json``, ``results.csv``, ``rd.png`` and ``bdrate.json`` into ``out_dir``.

    vtok's points are the rates of its rate ladder (``vtok_rates``; None: all of them); the anchors' are ``qps`` at
    full size, and the BD anchor's also ``anchor_ladder``: ``(qp, scale)`` pairs coded at a reduced size (streaming-ladder
    rungs).
    """
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}")
    out = Path(out_dir)
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    clips = collect_clips(data, mcl_jcv, frames, size, keep_size)
    metric = LPIPSMetric() if lpips else None
    doc = {"schema": results.SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "protocol": {"dataset": "MCL-JCV" if mcl_jcv else (", ".join(map(str, data)) if data else "shared eval set"),
                        "clips": [n for n, _ in clips], "frames": frames,
                        "size": "native" if keep_size else f"{size[0]}x{size[1]} (bicubic)", "config": config,
                        "preset": preset, "intra_period": intra_period or "one intra frame per clip",
                        "bpp": "file bytes * 8 / (width * height * frames)"},
           "codecs": {}, "points": []}
    digests = {name: hashlib.sha256(clip.tobytes()).hexdigest() for name, clip in clips}
    tasks = []  # (clip name, frames, codec, point, settings, version, runner)
    vtok_settings = VtokSettings(model, None if vtok_rates is None else list(vtok_rates))
    for c in codecs:
        rungs = list(anchor_ladder) if c == anchor else []  # the reduced-size rungs: the BD anchor's curve only
        bc = build_codec(c, vtok_settings, AnchorSettings(list(qps), rungs, preset, config, intra_period))
        version = bc.version()
        doc["codecs"][c] = {"settings": bc.description(), "version": version}
        for name, clip in clips:
            for point, st in bc.points():
                tasks.append((name, clip, c, point, st, version, lambda clip=clip, bc=bc, p=point: bc.run(clip, p)))
        if hasattr(bc, "check_files"):
            bc.check_files(clips[0][1][:9])  # one real file round trip per run

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), unit="encode", dynamic_ncols=True)

    def finish(task, dec, nbytes, times):
        name, clip, codec, point, st, version, _ = task
        t, h, w, _ = clip.shape
        row = {"clip": name, "codec": codec, "point": point, "settings": st, "version": version, "frames": t,
               "width": w, "height": h, "bytes": int(nbytes), "bpp": nbytes * 8 / (t * h * w),
               **_metrics(clip, dec, metric), **times}
        path = cache / f"{_key(digests[name], codec, st, version, lpips)}.json"
        path.write_text(json.dumps(row))
        doc["points"].append(row)
        if bar is not None:
            bar.update(1)

    pending = []
    for task in tasks:
        name, clip, codec, point, st, version, _ = task
        path = cache / f"{_key(digests[name], codec, st, version, lpips)}.json"
        if path.exists():
            doc["points"].append(json.loads(path.read_text()))
            if bar is not None:
                bar.update(1)
        else:
            pending.append(task)
    external = [t for t in pending if t[2] in ANCHORS]  # external encoders run in threads
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [(t, pool.submit(t[6])) for t in external]
        for t in [t for t in pending if t[2] not in ANCHORS]:  # in-process codecs run here meanwhile
            finish(t, *t[6]())
        for t, f in futures:
            finish(t, *f.result())
    if bar is not None:
        bar.close()
    doc["points"].sort(key=lambda p: (p["codec"], p["clip"], str(p["point"])))
    results.save(doc, out)
    bd = bd_table(doc, anchor) if anchor in doc["codecs"] else []
    (out / "bdrate.json").write_text(json.dumps(bd, indent=1))
    plot_rd(doc, out / "rd.png")
    log(format_summary(doc, bd))
    return doc


def at_bpp(doc: dict, target: float = 0.04) -> list[dict]:
    """Each codec's mean metrics at ``target`` bpp: interpolated on log-bpp inside its curve, else its nearest point."""
    out = []
    for codec in doc["codecs"]:
        row = {"codec": codec}
        for metric in ("psnr", "ms_ssim", "lpips"):
            pts = results.curves(doc, metric).get(codec, [])
            if not pts:
                continue
            xs = [math.log(p[0]) for p in pts]
            ys = [p[1] for p in pts]
            lt = math.log(target)
            if xs[0] <= lt <= xs[-1]:
                row[metric] = float(np.interp(lt, xs, ys))
                row["bpp"] = target
            else:
                i = int(np.argmin([abs(x - lt) for x in xs]))
                row[metric] = ys[i]
                row["bpp"] = pts[i][0]
        out.append(row)
    return out


def format_summary(doc: dict, bd: list[dict]) -> str:
    lines = ["codec      point        bpp    PSNR  MS-SSIM   LPIPS"]
    for codec in doc["codecs"]:
        cv = {m: {p[2]: p for p in results.curves(doc, m).get(codec, [])} for m in ("psnr", "ms_ssim", "lpips")}
        for key, p in sorted(cv["psnr"].items(), key=lambda kv: kv[1][0]):
            ms = cv["ms_ssim"].get(key, (None, float("nan")))[1]
            lp = cv["lpips"].get(key, (None, float("nan")))[1]
            lines.append(f"{codec:8s} {key:>7s} {p[0]:10.4f} {p[1]:7.2f} {ms:8.4f} {lp:7.4f}")
    lines.append("at 0.04 bpp (interpolated on log-bpp; outside a curve: its nearest point, with that point's bpp):")
    for r in at_bpp(doc):
        lines.append(f"  {r['codec']:8s} bpp {r.get('bpp', float('nan')):.4f}  PSNR {r.get('psnr', float('nan')):.2f}  "
                     f"MS-SSIM {r.get('ms_ssim', float('nan')):.4f}  LPIPS {r.get('lpips', float('nan')):.4f}")
    for r in bd:
        lines.append(f"BD-rate {r['codec']} vs {r['anchor']} ({r['metric']}, {r['interpolation']}): "
                     f"{r['bd_rate_percent']:.1f} %  (BD-{r['metric']} {r['bd_quality']:+.4f})")
    return "\n".join(lines)
