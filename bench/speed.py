"""Speed: encode and decode frames per second, the tokenizer alone and the whole codec (``vtok bench speed``).

For each frame size (``--size 640x360,1920x1080``), model and decoder precision (``--precision fp32,bf16``:
``codec/models/precision.py``) it times, on a synthetic clip after one warm-up run, best of ``repeats``:
``VideoTokenizer.encode`` / ``decode`` (uint8 in, uint8 out, all bits) and ``Codec.compress`` / ``decompress`` in
memory (the model's default rate: tokenizer, prior and range coder; the prior and range decoder's share alone too),
with the peak resident memory of each (the kernel's peak mark reset before it, ``/proc/self/clear_refs``; Linux
only). The encoder runs in float32 whatever the precision, so its numbers repeat per precision as a check of the
run's noise. Everything of one run is measured side by side and the CPU is named, since the same code runs at
different speeds on different (and shared, noisy) machines; on the GPU too when there is one.
"""

from __future__ import annotations

import io
import json
import time

import torch

from vtok.bench.datasets import synthetic_clip
from vtok.codec.loading import load_codec
from vtok.codec.models.precision import resolved


def _peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return None


def _timed(fn, repeats: int, sync) -> tuple[float, object, float | None]:
    """Best seconds of ``repeats`` calls of ``fn`` (after a warm-up one), its last result and the peak RSS (MiB)."""
    fn()
    can_reset = _peak_reset()
    best, out = float("inf"), None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, out, _peak_mib() if can_reset else None


def measure_speed(model=None, frames: int = 33, width: int = 640, height: int = 360, repeats: int = 3,
                  device: str = "cpu", precision: str = "fp32", whole: bool = True) -> dict:
    """One row of ``vtok bench speed``: a model at one frame size and decoder precision."""
    codec = load_codec(model, device=device)
    tok = codec.tokenizer
    tok.precision = resolved(precision, tok._device())
    clip = synthetic_clip(frames, height, width)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    te, tokens, pe = _timed(lambda: tok.encode(clip), repeats, sync)
    td, _, pd = _timed(lambda: tok.decode(tokens, size=clip.shape[:3]), repeats, sync)
    row = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "threads": torch.get_num_threads(),
           "frames": frames, "width": width, "height": height, "model_id": tok.model_id, "precision": tok.precision,
           "encode_fps": frames / te, "decode_fps": frames / td, "encode_peak_mib": pe, "decode_peak_mib": pd}
    if whole:
        tc, data, pc = _timed(lambda: codec.compress(clip), repeats, sync)
        tx, _, px = _timed(lambda: codec.decompress(data), repeats, sync)
        tp, _, _ = _timed(lambda: _entropy_decode(codec, data), repeats, sync)
        row.update({"rate": codec.chosen_rate(None, None), "bpp": len(data) * 8 / clip[..., 0].size,
                    "codec_encode_fps": frames / tc, "codec_decode_fps": frames / tx,
                    "prior_decode_ms": 1000 * tp / frames,
                    "codec_encode_peak_mib": pc, "codec_decode_peak_mib": px})
    return row


def _entropy_decode(codec, data: bytes) -> None:
    """The prior and range decoder's share of decoding ``data``: every GOP's tokens, no pixels."""
    coded = codec.open(io.BytesIO(data))
    coder = codec.coder_of(coded.header.model_id)
    for unit in coded.units:
        coder.gop_tokens(coded.reader.read_payload(unit), unit.frames, coded.header)


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


def _line(r: dict) -> str:
    text = (f"{r['model']} {r['precision']}: {r['device']} ({r['threads']} threads), {r['frames']} frames "
            f"{r['width']}x{r['height']}: tokenizer encode {r['encode_fps']:.1f} / decode {r['decode_fps']:.1f} fps")
    if "codec_decode_fps" in r:
        text += (f"; codec (rate {r['rate']}, {r['bpp']:.4f} bpp) encode {r['codec_encode_fps']:.1f} / decode "
                 f"{r['codec_decode_fps']:.1f} fps (prior and range decoder {r['prior_decode_ms']:.1f} ms a frame)")
        if r["codec_decode_peak_mib"] is not None:
            text += f", peak {r['codec_encode_peak_mib']:.0f} / {r['codec_decode_peak_mib']:.0f} MiB"
    return text


def run_speed(model=None, frames: int = 33, size: str = "640x360", repeats: int = 3, precision: str = "fp32,bf16",
              tokenizer_only: bool = False, log=print) -> list[dict]:
    """``model``: one model (a path or a bundled name), several separated by commas, or None (the default);
    ``size``: one ``WxH`` or several separated by commas; ``precision``: the decoder's, one or several."""
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in str(size).split(",")]
    precisions = str(precision).split(",")
    for p in precisions:
        resolved(p)  # a bad name fails before any work
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    models = str(model).split(",") if model else [None]
    results = []
    log(f"CPU: {cpu_name()}")
    for w, h in sizes:
        for d in devices:
            for m in models:
                for p in precisions:
                    r = measure_speed(m, frames, w, h, repeats, d, p, whole=not tokenizer_only)
                    r["model"] = m or "default"
                    log(_line(r))
                    results.append(r)
    log(json.dumps(results))
    return results
