"""Codec benchmark (``vtok bench codec``): the whole codec through real files.

* rate on evaluation clips: bpp, raw token bits, the prior's cross-entropy, the coded payload → the prior's saving
  (1 − payload / raw bits) and the range coder's overhead (payload / cross-entropy − 1);
* encode / decode frames per second of ``compress_file`` / ``decompress_file`` (reading and writing files included);
* peak memory (peak RSS of a fresh process during the command, after its imports) of compress and decompress for a
  short and a long synthetic clip, which shows whether memory grows with the clip's length, and for one clip at
  360p, 720p, 1080p and 2160p, with the frames per second of each (whether it grows with the frame's area), and of
  compress at 1080p for each encoder preset asked for (``--presets``; a searching preset holds a GOP's frames).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from vtok.bench.datasets import eval_clips, synthetic_clip
from vtok.bitstream.info import file_info as vtok_info
from vtok.bitstream.errors import ToolError
from vtok.codec.loading import load_codec
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.media.write import VideoWriter



def rate_on_clips(model=None, prior=None, data=None, frames: int = 33, size=(640, 360), bits=None, log=print) -> dict:
    rows = []
    codec = load_codec(model, prior)  # loaded once, as a user's process would hold it
    with tempfile.TemporaryDirectory() as d:
        for name, clip in eval_clips(data, frames, size):
            src = Path(d) / "src.mkv"
            with VideoWriter(src, clip.shape[2], clip.shape[1], 30) as w:
                w.write(clip)
            s = compress_file(src, Path(d) / "c.vtok", bits=bits, codec=codec, log=lambda *a: None)
            r = decompress_file(Path(d) / "c.vtok", Path(d) / "d.mkv", codec=codec, log=lambda *a: None)
            info = vtok_info(Path(d) / "c.vtok")
            row = {"clip": name, "frames": s["frames"], "bpp": s["bpp"], "raw_token_bits": s["raw_token_bits"],
                   "cross_entropy_bits": info["cross_entropy_bits"], "payload_bits": info["payload_bits"],
                   "file_bits": info["file_bytes"] * 8,
                   "prior_saving": 1 - info["payload_bits"] / s["raw_token_bits"],
                   "coder_overhead": info["payload_bits"] / info["cross_entropy_bits"] - 1,
                   "encode_fps": s["fps"], "decode_fps": r["fps"]}
            rows.append(row)
            log(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
    tot = {k: sum(r[k] for r in rows) for k in ("raw_token_bits", "cross_entropy_bits", "payload_bits", "file_bits")}
    summary = {"clips": len(rows), "frames": frames, "size": list(size), "bpp_mean": sum(r["bpp"] for r in rows) / len(rows),
               "prior_saving": 1 - tot["payload_bits"] / tot["raw_token_bits"],
               "coder_overhead": tot["payload_bits"] / tot["cross_entropy_bits"] - 1,
               "encode_fps_mean": sum(r["encode_fps"] for r in rows) / len(rows),
               "decode_fps_mean": sum(r["decode_fps"] for r in rows) / len(rows)}
    log("rate summary: " + json.dumps(summary))
    return {"rows": rows, "summary": summary}


def _child_peak(flow: str, src, out, model=None, preset: str = "") -> float:
    """Run ``codec.files.<flow>(src, out)`` in a fresh process; the peak resident memory of its work in MiB.

    The model is loaded first; then the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``), so what is read
    back (``VmHWM``) is the peak during the flow itself, not the import of torch or the loading of weights.
    """
    code = ("import sys, json; from vtok.codec import files, loading;"
            "c = loading.load_codec(sys.argv[4] or None);"
            "open('/proc/self/clear_refs', 'w').write('5');"
            "kw = {'preset': sys.argv[5]} if sys.argv[5] else {};"
            "s = getattr(files, sys.argv[1])(sys.argv[2], sys.argv[3], codec=c, log=lambda *a: None, **kw);"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1];"
            "print('PEAK', hwm, s['fps'])")
    r = subprocess.run([sys.executable, "-c", code, flow, str(src), str(out), str(model or ""), preset],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "benchmark child failed")
    peak, fps = r.stdout.split("PEAK")[-1].split()
    return int(peak) / 1024, float(fps)


def _peaks(folder, width: int, height: int, frames: int, fps: int, model=None) -> dict:
    """Peak memory and frames per second of compress and decompress of a synthetic clip, each in a fresh process."""
    src, coded = Path(folder) / "syn.y4m", Path(folder) / "m.vtok"
    with VideoWriter(src, width, height, fps) as w:
        for i in range(0, frames, 8):
            w.write(synthetic_clip(min(8, frames - i), height, width, seed=i))
    enc, enc_fps = _child_peak("compress_file", src, coded, model)
    dec, dec_fps = _child_peak("decompress_file", coded, Path(folder) / "m.y4m", model)
    src.unlink()
    return {"width": width, "height": height, "frames": frames, "compress_peak_mib": enc, "compress_fps": enc_fps,
            "decompress_peak_mib": dec, "decompress_fps": dec_fps}


def memory_by_length(model=None, seconds=(10, 60), fps: int = 24, size=(320, 180), log=print) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        for s in seconds:
            out.append({"seconds": s, **_peaks(d, size[0], size[1], s * fps, fps, model)})
            log(json.dumps(out[-1]))
    return out


SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))


def memory_by_size(model=None, sizes=SIZES, frames: int = 17, fps: int = 24, log=print) -> list[dict]:
    """Peak memory and frames per second of compress and decompress of one ``frames``-frame synthetic clip at each
    size (one GOP at the default GOP length of 65, so the whole clip is one unit: the worst case per frame area)."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        for w, h in sizes:
            out.append(_peaks(d, w, h, frames, fps, model))
            log(json.dumps(out[-1]))
    return out


def memory_by_preset(model=None, presets=("medium",), size=(1920, 1080), frames: int = 17, fps: int = 24,
                     log=print) -> list[dict]:
    """Peak memory and frames per second of compress of one synthetic clip for each encoder preset."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "syn.y4m"
        with VideoWriter(src, size[0], size[1], fps) as w:
            for i in range(0, frames, 8):
                w.write(synthetic_clip(min(8, frames - i), size[1], size[0], seed=i))
        for preset in presets:
            peak, enc_fps = _child_peak("compress_file", src, Path(d) / "m.vtok", model, preset)
            out.append({"preset": preset, "width": size[0], "height": size[1], "frames": frames,
                        "compress_peak_mib": peak, "compress_fps": enc_fps})
            log(json.dumps(out[-1]))
    return out


def run_codec_bench(model=None, prior=None, data=None, frames: int = 33, skip_memory: bool = False,
                    skip_rate: bool = False, sizes=SIZES, presets=None, json_path=None, log=print) -> dict:
    res = {"rate": rate_on_clips(model, prior, data, frames, log=log)} if not skip_rate else {}
    if presets:
        res["memory_by_preset"] = memory_by_preset(model, presets, log=log)
    if not skip_memory:
        res["memory"] = memory_by_length(model, log=log)
        res["memory_by_size"] = memory_by_size(model, sizes, log=log)
    if json_path:
        Path(json_path).write_text(json.dumps(res, indent=1))
    return res
