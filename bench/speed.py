"""Tokenizer speed: encode and decode frames per second at 640×360 (``vtok bench speed``).

Times ``VideoTokenizer.encode`` / ``decode`` (uint8 in, uint8 out, inference mode) on a synthetic clip, after one
warm-up run, best of ``repeats``; on the CPU with the threads torch uses by default, and on the GPU when there is one.
Several models (``--model default,magvit18``) are measured side by side in one run, and the CPU is named, since the
same code runs at different speeds on different (and shared, noisy) machines.
"""

from __future__ import annotations

import json
import time

import torch

from vtok.bench.datasets import synthetic_clip
from vtok.codec.models.zoo import load_tokenizer


def measure_speed(model=None, frames: int = 33, width: int = 640, height: int = 360, repeats: int = 3,
                  device: str = "cpu") -> dict:
    tok = load_tokenizer(model, device=device)
    clip = synthetic_clip(frames, height, width)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    tok.decode(tok.encode(clip))  # warm-up
    enc, dec = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        tokens = tok.encode(clip)
        sync()
        t1 = time.perf_counter()
        tok.decode(tokens, size=clip.shape[:3])
        sync()
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    return {"device": device if device == "cpu" else torch.cuda.get_device_name(), "threads": torch.get_num_threads(),
            "frames": frames, "width": width, "height": height, "model_id": tok.model_id,
            "encode_fps": frames / min(enc), "decode_fps": frames / min(dec)}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_speed(model=None, frames: int = 33, size: str = "640x360", repeats: int = 3, log=print) -> list[dict]:
    """``model``: one model (a path or a bundled name), several separated by commas, or None (the default)."""
    w, h = (int(v) for v in size.lower().split("x"))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models = str(model).split(",") if model else [None]
    results = []
    log(f"CPU: {cpu_name()}")
    for d in devices:
        for m in models:
            r = measure_speed(m, frames, w, h, repeats, d)
            r["model"] = m or "default"
            log(f"{r['model']}: {r['device']} ({r['threads']} threads), {frames} frames {w}x{h}: "
                f"encode {r['encode_fps']:.1f} fps, decode {r['decode_fps']:.1f} fps")
            results.append(r)
    log(json.dumps(results))
    return results

