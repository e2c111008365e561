"""The rate-distortion benchmark (``vtok bench``): vtok and the anchors on the same clips, one results schema.

Every point is a real file round trip: anchors through ffmpeg (``bench.anchors``), vtok through ``compress_file`` /
``decompress_file`` exactly as a user's ``vtok compress`` / ``vtok decompress``. Metrics are computed in Python on
the decoded frames against the source frames (``bench.metrics``). Anchor results are cached by (clip content hash,
codec, settings, encoder version), so reruns only compute what changed.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench import results
from bench.anchors import ANCHORS, build_anchor
from bench.bdrate import bd_table
from bench.datasets import eval_clips, mcl_jcv_files
from bench.metrics import LPIPSMetric, msssim_frames, psnr_frames, psnr_yuv_frames
from bench.plot import plot_rd
from bitstream.errors import ToolError
from codec.coding import load_codec
from codec.files import compress_file, decompress_file
from codec.ladder import rate_ladder
from codec.video_io import VideoWriter, read_video

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


def vtok_round_trip(clip: np.ndarray, rate: int | None, codec, fps: float) -> tuple[np.ndarray, int, dict]:
    """Compress and decompress ``clip`` in memory with a loaded ``Codec``; returns (decoded frames, bytes of the
    ``.vtok`` file it would write, timings)."""
    t0 = time.perf_counter()
    data = codec.compress(clip, fps=fps, rate=rate)
    t1 = time.perf_counter()
    dec = codec.decompress(data)
    t2 = time.perf_counter()
    return dec, len(data), {"encode_s": t1 - t0, "decode_s": t2 - t1}


def check_file_round_trip(clip: np.ndarray, rate: int | None, codec, fps: float) -> None:
    """The file flows (``vtok compress`` / ``decompress`` through real files) give the in-memory sizes and frames
    (the bytes differ only in the source's colour tags, which a file carries in its header)."""
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src.mkv"
        with VideoWriter(src, clip.shape[2], clip.shape[1], fps) as w:
            w.write(clip)
        compress_file(src, Path(d) / "c.vtok", rate=rate, quiet=True, codec=codec, log=lambda *a: None)
        decompress_file(Path(d) / "c.vtok", Path(d) / "d.mkv", quiet=True, codec=codec, log=lambda *a: None)
        data = codec.compress(clip, fps=fps, rate=rate)
        if (Path(d) / "c.vtok").stat().st_size != len(data) or not np.array_equal(read_video(Path(d) / "d.mkv"),
                                                                        codec.decompress(data)):
            raise ToolError("the file round trip differs from the in-memory one")


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
    unknown = [c for c in codecs if c != "vtok" and c not in ANCHORS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)}; choose from vtok, {', '.join(ANCHORS)}")
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
    for c in codecs:
        if c == "vtok":
            cm = load_codec(model)
            ladder = rate_ladder(cm.tokenizer)
            rates = list(range(len(ladder))) if vtok_rates is None else list(vtok_rates)
            bad = [r for r in rates if not 0 <= r < len(ladder)]
            if bad:
                raise ValueError(f"vtok rates must be in 0..{len(ladder) - 1}, got {bad}")
            version = f"vtok model {cm.model_id}"
            doc["codecs"]["vtok"] = {"settings": {"model": str(model or "bundled default"), "gop": 17,
                                                  "rate_ladder": [vars(p) for p in ladder]},
                                     "version": version}
            for name, clip in clips:
                for r in rates:
                    st = {"codec": "vtok", "rate": r, "bits_per_token": ladder[r].bits, "scale": ladder[r].scale,
                          "gop": 17}
                    tasks.append((name, clip, "vtok", r, st, version,
                                  lambda clip=clip, r=r: vtok_round_trip(clip, r, cm, 30.0)))
            check_file_round_trip(clips[0][1][:9], rates[-1], cm, 30.0)  # one real file round trip per run
        else:
            a = build_anchor(c, preset=preset, config=config, intra_period=intra_period)
            version = a.version()
            rungs = list(anchor_ladder) if c == anchor else []  # the reduced-size rungs: the BD anchor's curve only
            doc["codecs"][c] = {"settings": a.settings(qp=-1) | {"qp": list(qps), "ladder": [list(x) for x in rungs]},
                                "version": version}
            for name, clip in clips:
                for qp, scale in [(q, 1.0) for q in qps] + rungs:
                    point = qp if scale == 1.0 else f"{qp}@{scale:g}"
                    tasks.append((name, clip, c, point, a.settings(qp, scale), version,
                                  lambda clip=clip, a=a, qp=qp, scale=scale: a.encode_decode(clip, qp, scale=scale)))

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
    anchors_todo = [t for t in pending if t[2] != "vtok"]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [(t, pool.submit(t[6])) for t in anchors_todo]
        for t in [t for t in pending if t[2] == "vtok"]:  # vtok runs here while the anchors encode
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
