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

from vtok.bench.analysis import results
from vtok.bench.peers.anchors import ANCHORS
from vtok.bench.peers.codecs import CODECS, AnchorSettings, VtokSettings, build_codec, is_codec
from vtok.bench.analysis.bdrate import bd_table
from vtok.bench.datasets import eval_clips, mcl_jcv_files
from vtok.bench.analysis.metrics import LPIPSMetric, msssim_frames, psnr_frames, psnr_yuv_frames
from vtok.bench.analysis.plot import plot_rd
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.media.read import read_video

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


def run_bench(data=None, mcl_jcv=None, codecs=("vtok", "x265", "vvc"), qps=DEFAULT_QPS, vtok_rates=None,
              frames: int | None = 33, size=(640, 360), keep_size: bool = False, out_dir="bench-out", jobs: int = 1,
              config: str = "low-delay", preset: str = "medium", intra_period: int | None = None, model=None,
              anchor: str = "x265", cache_dir=None, lpips: bool = True, progress: bool = True, anchor_ladder=(),
              gop: int = DEFAULT_GOP, reuse=None, rename=None, device: str = "cpu", hold: float | None = None,
              tune: str | None = None, log=print) -> dict:
    """Run the benchmark, write ``results.json``, ``results.csv``, ``rd.png`` and ``bdrate.json`` into ``out_dir``.

    ``codecs``: registered names and ``vtok:MODEL`` peers (e.g. ``vtok:default,vtok:runs/dec/ema.safetensors``;
    ``anchor`` may be one of them). vtok's points are the rates of its rate ladder (``vtok_rates``; None: all of
    them) coded in GOPs of ``gop`` frames, with the encoder's temporal ``hold`` (None: each model's own) and, for a
    ``…@PRESET`` peer that searches, ``tune``; the anchors' are ``qps`` at full size, and the BD anchor's also
    ``anchor_ladder``: ``(qp, scale)`` pairs coded at a reduced size (streaming-ladder rungs).
    """
    if any(not 0 < scale < 1 for _, scale in anchor_ladder):
        raise ValueError(f"the scales of the anchor ladder {list(anchor_ladder)} must be between 0 and 1")
    unknown = [c for c in codecs if not is_codec(c)]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; choose from {', '.join(CODECS)}, vtok:MODEL")
    out = Path(out_dir)
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    clips = collect_clips(data, mcl_jcv, frames, size, keep_size)
    doc = {"schema": results.SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "protocol": {"dataset": "MCL-JCV" if mcl_jcv else (", ".join(map(str, data)) if data else "shared eval set"),
                        "clips": [n for n, _ in clips], "frames": frames,
                        "size": "native" if keep_size else f"{size[0]}x{size[1]} (bicubic)", "config": config,
                        "preset": preset, "intra_period": intra_period or "one intra frame per clip",
                        "bpp": "file bytes * 8 / (width * height * frames)"},
           "codecs": {}, "points": []}
    vtok_settings = VtokSettings(model, None if vtok_rates is None else list(vtok_rates), gop, device=device,
                                 hold=hold, tune=tune)
    built = {c: build_codec(c, vtok_settings, AnchorSettings(list(qps), list(anchor_ladder) if c == anchor else [],
                                                              preset, config, intra_period)) for c in codecs}
    tasks = plan(doc, clips, built)
    run_tasks(doc, tasks, cache, LPIPSMetric() if lpips else None, jobs, progress)
    if reuse:
        reuse_points(doc, results.load(reuse), dict(rename or {}))
    doc["points"].sort(key=lambda p: (p["codec"], p["clip"], str(p["point"])))
    results.save(doc, out)
    write_comparison(doc, clips, built, out / "compare.png", log=log)
    bd = bd_table(doc, anchor) if anchor in doc["codecs"] else []
    (out / "bdrate.json").write_text(json.dumps(bd, indent=1))
    plot_rd(doc, out / "rd.png")
    log(format_summary(doc, bd))
    return doc


def plan(doc: dict, clips: list, built: dict) -> list[tuple]:
    """Every (clip, codec, point) to measure, as tasks ``(clip name, frames, codec, point, settings, version,
    runner)``; each codec's description goes into ``doc``, and each vtok peer checks one real file round trip."""
    tasks = []
    for c, bc in built.items():  # the BD anchor alone has the reduced-size rungs (``AnchorSettings``)
        version = bc.version()
        doc["codecs"][c] = {"settings": bc.description(), "version": version}
        for name, clip in clips:
            for point, st in bc.points():
                tasks.append((name, clip, c, point, st, version, lambda clip=clip, bc=bc, p=point: bc.run(clip, p)))
        if hasattr(bc, "check_files"):
            bc.check_files(clips[0][1][:9])  # one real file round trip per run
    return tasks


def run_tasks(doc: dict, tasks: list, cache: Path, metric: LPIPSMetric | None, jobs: int, progress: bool) -> None:
    """Measure the tasks not in ``cache`` (keyed by clip content, codec, settings, version and whether LPIPS is
    measured), the others read from it; the anchors' external encoders in ``jobs`` threads while the in-process
    codecs run here. Every point goes into ``doc["points"]``."""
    digests = {}

    def key(task) -> Path:
        name, clip, codec, point, st, version, _ = task
        if name not in digests:
            digests[name] = hashlib.sha256(clip.tobytes()).hexdigest()
        return cache / f"{_key(digests[name], codec, st, version, metric is not None)}.json"

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), unit="encode", dynamic_ncols=True)

    def finish(task, dec, nbytes, times):  # the point's row: measured, cached, counted
        name, clip, codec, point, st, version, _ = task
        t, h, w, _ = clip.shape
        row = {"clip": name, "codec": codec, "point": point, "settings": st, "version": version, "frames": t,
               "width": w, "height": h, "bytes": int(nbytes), "bpp": nbytes * 8 / (t * h * w),
               **_metrics(clip, dec, metric), **times}
        key(task).write_text(json.dumps(row))
        doc["points"].append(row)
        if bar is not None:
            bar.update(1)

    pending = []
    for task in tasks:
        if key(task).exists():
            doc["points"].append(json.loads(key(task).read_text()))
        else:
            pending.append(task)
    if bar is not None:
        bar.update(len(tasks) - len(pending))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [(t, pool.submit(t[6])) for t in pending if t[2] in ANCHORS]
        for t in [t for t in pending if t[2] not in ANCHORS]:
            finish(t, *t[6]())
        for t, f in futures:
            finish(t, *f.result())
    if bar is not None:
        bar.close()


def reuse_points(doc: dict, earlier: dict, rename: dict) -> None:
    """Add to ``doc`` the points of ``earlier``'s codecs that this run did not code (``rename``: old → new codec
    name), after checking that both measured the same clips, frames and size: a new model is then compared with
    stored anchors without coding them again (every codec here is deterministic)."""
    for key in ("clips", "frames", "size"):
        if earlier["protocol"].get(key) != doc["protocol"].get(key):
            raise ValueError(f"the reused results differ in their protocol's {key!r}: "
                             f"{earlier['protocol'].get(key)} against {doc['protocol'].get(key)}")
    for old, info in earlier["codecs"].items():
        new = rename.get(old, old)
        if new in doc["codecs"]:
            continue
        doc["codecs"][new] = dict(info, reused_from=earlier.get("created", "earlier results"))
        doc["points"] += [dict(p, codec=new) for p in earlier["points"] if p["codec"] == old]


def write_comparison(doc: dict, clips: list, built: dict, out, crop=(320, 180), log=print) -> Path | None:
    """One frame of the first clip, a crop at full scale, as the source and each codec decode it at about equal
    bpp (each codec's point nearest to vtok's top point on that clip), labelled with the point's bpp, PSNR and LPIPS
    (means over the clip's frames, as in the RD plot). Codecs whose points were reused are coded again at that one
    point for their picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, clip = clips[0]
    rows = [p for p in doc["points"] if p["clip"] == name]
    ours = [p for p in rows if p["codec"].startswith("vtok")]
    if not ours:
        return None
    target = max(ours, key=lambda p: p["bpp"])["bpp"]
    t = len(clip) // 2
    h, w = clip.shape[1:3]
    cw, ch = min(crop[0], w), min(crop[1], h)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    panels = [("source", clip[t, y0:y0 + ch, x0:x0 + cw], "")]
    for codec in doc["codecs"]:
        pts = [p for p in rows if p["codec"] == codec]
        if not pts or not (codec in built or is_codec(codec)):
            continue
        p = min(pts, key=lambda p: abs(math.log(p["bpp"] / target)))
        if codec not in built:
            try:
                built[codec] = build_codec(codec, VtokSettings(gop=p["settings"].get("gop", DEFAULT_GOP),
                                                               hold=p["settings"].get("hold", 0.0)),
                                           AnchorSettings(config=doc["protocol"].get("config", "low-delay"),
                                                          preset=doc["protocol"].get("preset", "medium")))
            except (OSError, ValueError) as e:
                log(f"picture comparison: {codec} left out ({e})")
                continue
        if built[codec].version() != p["version"]:
            log(f"picture comparison: {codec}'s points were made by {p['version']}, not at hand: left out")
            continue
        dec, _, _ = built[codec].run(clip, p["point"])
        lp = f", LPIPS {p['lpips']:.3f}" if p.get("lpips") is not None else ""
        panels.append((f"{codec} ({p['point']})", dec[t, y0:y0 + ch, x0:x0 + cw],
                       f"{p['bpp']:.4f} bpp, {p['psnr']:.2f} dB{lp}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.4))
    for ax, (title, img, label) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{title}\n{label}" if label else title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{name}, frame {t}, {cw}x{ch} crop at full scale", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    log(f"picture comparison: {out}")
    return out


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


def encode_speed(doc: dict) -> dict:
    """Per codec whose points record their encoding time, frames encoded per second over all its points."""
    frames, seconds = {}, {}
    for p in doc["points"]:
        if p.get("encode_s"):
            frames[p["codec"]] = frames.get(p["codec"], 0) + p["frames"]
            seconds[p["codec"]] = seconds.get(p["codec"], 0.0) + p["encode_s"]
    return {c: frames[c] / seconds[c] for c in frames}


def format_summary(doc: dict, bd: list[dict]) -> str:
    lines = ["codec      point        bpp    PSNR  MS-SSIM   LPIPS"]
    for codec in doc["codecs"]:
        cv = {m: {p[2]: p for p in results.curves(doc, m).get(codec, [])} for m in ("psnr", "ms_ssim", "lpips")}
        for key, p in sorted(cv["psnr"].items(), key=lambda kv: kv[1][0]):
            ms = cv["ms_ssim"].get(key, (None, float("nan")))[1]
            lp = cv["lpips"].get(key, (None, float("nan")))[1]
            lines.append(f"{codec:8s} {key:>7s} {p[0]:10.4f} {p[1]:7.2f} {ms:8.4f} {lp:7.4f}")
    for codec, fps in encode_speed(doc).items():
        lines.append(f"encode speed {codec}: {fps:.2f} fps (frames / encoding seconds, all points and clips)")
    lines.append("at 0.04 bpp (interpolated on log-bpp; outside a curve: its nearest point, with that point's bpp):")
    for r in at_bpp(doc):
        lines.append(f"  {r['codec']:8s} bpp {r.get('bpp', float('nan')):.4f}  PSNR {r.get('psnr', float('nan')):.2f}  "
                     f"MS-SSIM {r.get('ms_ssim', float('nan')):.4f}  LPIPS {r.get('lpips', float('nan')):.4f}")
    for r in bd:
        lines.append(f"BD-rate {r['codec']} vs {r['anchor']} ({r['metric']}, {r['interpolation']}): "
                     f"{r['bd_rate_percent']:.1f} %  (BD-{r['metric']} {r['bd_quality']:+.4f})")
    return "\n".join(lines)
