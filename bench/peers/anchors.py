"""Anchor codecs for the benchmark: HEVC (x265) and VVC (VVenC), through the ffmpeg of ``imageio-ffmpeg``.

HEVC: ITU-T H.265 (x265 encoder); VVC: ITU-T H.266 (Fraunhofer VVenC, Wieckowski et al., "VVenC: An Open and
Optimized VVC Encoder Implementation", ICMEW 2021). Each anchor is a small class that builds ffmpeg argument lists
and records the encoder's name, version and every setting; the bench runs it as a real file round trip: RGB frames →
raw YUV 4:2:0 → encoder → bitstream file → decoder → RGB frames, and measures quality on the decoded arrays in Python
(raw ``.hevc``/``.266`` streams carry no timestamps, so ffmpeg's own frame pairing is never used).

Streaming-ladder points: ``encode_decode(..., scale=s)`` codes the clip at ``s`` × its size (bicubic, even sides) and
scales the decoded frames back up (bicubic) before the metrics, as a streaming service's lower rungs do, so the
anchors reach rates below their QP 51 at full size.

Settings: ``low-delay`` (no frame reordering: x265 ``bframes=0``; VVenC ``GopSize=8:PicReordering=0``) or
``random-access`` (x265 default B-frames; VVenC's default GOP 32). One intra frame per clip unless ``intra_period``
says otherwise. Fixed QP, perceptual QP adaptation off (x265 ``aq-mode=0``; VVenC ``-qpa 0``).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vtok.bitstream.errors import ToolError

CONFIGS = ("low-delay", "random-access")


def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by ``imageio-ffmpeg`` (it has libx265, libvvenc and a VVC decoder)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ToolError("the anchors need the imageio-ffmpeg package (pip install imageio-ffmpeg)") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _encoder_banner(encoder_args: list[str]) -> str:
    """What an encoder prints (to stderr) when it codes one tiny frame: where its version is found."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-f", "lavfi", "-i", "color=s=64x64:d=0.04", "-frames:v", "1", *encoder_args,
           "-f", "null", "-"]
    return subprocess.run(cmd, capture_output=True, text=True).stderr


def _run(cmd: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, input=stdin, capture_output=True)
    if r.returncode != 0:
        tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no message)"]
        raise ToolError(f"{Path(cmd[0]).name} failed: {tail[0]}")
    return r


@dataclass
class Anchor:
    """Base of the anchors. Args: preset; config (``low-delay`` or ``random-access``); intra_period (frames; None:
    one intra frame per clip)."""

    preset: str = "medium"
    config: str = "low-delay"
    intra_period: int | None = None
    name: str = field(init=False, default="")
    suffix: str = field(init=False, default="")
    encoder: str = field(init=False, default="")
    pix_fmt: str = field(init=False, default="yuv420p")

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise ValueError(f"config must be one of {', '.join(CONFIGS)}, got {self.config!r}")

    def settings(self, qp: int, scale: float = 1.0) -> dict:
        """Everything that defines an encode (goes into the results and the cache key)."""
        st = {"codec": self.name, "encoder": self.encoder, "preset": self.preset, "config": self.config,
              "intra_period": self.intra_period, "qp": qp, "input_pix_fmt": self.pix_fmt}
        if scale != 1.0:
            st["scale"] = scale
        return st

    def encoder_args(self, qp: int, frames: int) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        """ffmpeg's version line and the encoder library's own version banner."""
        exe = ffmpeg_exe()
        first = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout.splitlines()
        return (first[0] if first else "ffmpeg") + "; " + self._library_version()

    def _library_version(self) -> str:
        return self.encoder

    def encode_decode(self, frames: np.ndarray, qp: int, fps: float = 30.0,
                      scale: float = 1.0) -> tuple[np.ndarray, int, dict]:
        """RGB uint8 ``(T, H, W, 3)`` → (decoded RGB frames, bitstream bytes, timings); ``scale`` < 1 codes a smaller
        picture and scales the decoded one back up."""
        if scale != 1.0:
            from vtok.codec.media.read import resize_frames

            h, w = frames.shape[1:3]
            size = (max(8, round(w * scale / 2) * 2), max(8, round(h * scale / 2) * 2))
            dec, nbytes, times = self.encode_decode(resize_frames(frames, size), qp, fps)
            return resize_frames(dec, (w, h)), nbytes, times
        import time

        exe = ffmpeg_exe()
        t, h, w, _ = frames.shape
        with tempfile.TemporaryDirectory() as d:
            bs = Path(d) / f"stream{self.suffix}"
            raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
            t0 = time.perf_counter()
            _run([exe, "-hide_banner", "-loglevel", "error", "-y", *raw, "-vf", "scale=out_color_matrix=bt709:out_range=tv",
                  "-pix_fmt", self.pix_fmt, *self.encoder_args(qp, t), str(bs)], stdin=frames.tobytes())
            t1 = time.perf_counter()
            r = _run([exe, "-hide_banner", "-loglevel", "error", "-i", str(bs), "-vf",
                      "scale=in_color_matrix=bt709:in_range=tv", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            t2 = time.perf_counter()
            size = bs.stat().st_size
        out = np.frombuffer(r.stdout, np.uint8)
        if out.size != frames.size:
            raise ToolError(f"{self.name}: decoded {out.size // (h * w * 3)} frames, expected {t}")
        return out.reshape(frames.shape), size, {"encode_s": t1 - t0, "decode_s": t2 - t1}


@dataclass
class X265(Anchor):
    def __post_init__(self):
        super().__post_init__()
        self.name, self.suffix, self.encoder, self.pix_fmt = "x265", ".hevc", "libx265", "yuv420p"

    def encoder_args(self, qp: int, frames: int) -> list[str]:
        keyint = self.intra_period or max(frames, 1)
        params = [f"qp={qp}", f"keyint={keyint}", f"min-keyint={keyint}", "scenecut=0", "aq-mode=0", "info=0",
                  "log-level=error"]
        if self.config == "low-delay":
            params.append("bframes=0")
        return ["-c:v", "libx265", "-preset", self.preset, "-x265-params", ":".join(params), "-f", "hevc"]

    def _library_version(self) -> str:
        m = re.search(r"HEVC encoder version (\S+)", _encoder_banner(["-c:v", "libx265"]))
        return f"x265 {m.group(1)}" if m else "x265 (version unknown)"


@dataclass
class VVenC(Anchor):
    def __post_init__(self):
        super().__post_init__()
        self.name, self.suffix, self.encoder, self.pix_fmt = "vvc", ".266", "libvvenc", "yuv420p10le"

    def encoder_args(self, qp: int, frames: int) -> list[str]:
        gop = 8 if self.config == "low-delay" else 32
        period = self.intra_period or gop * (-(-max(frames, 1) // gop) + 1)  # beyond the clip: one intra frame
        params = [f"IntraPeriod={period}"]
        if self.config == "low-delay":
            params += ["GopSize=8", "PicReordering=0", "DecodingRefreshType=0"]
        preset = {"faster": "faster", "fast": "fast", "medium": "medium", "slow": "slow", "slower": "slower"}.get(
            self.preset, self.preset)
        return ["-c:v", "libvvenc", "-preset", preset, "-qp", str(qp), "-qpa", "0", "-vvenc-params", ":".join(params),
                "-f", "rawvideo"]

    def _library_version(self) -> str:
        banner = _encoder_banner(["-pix_fmt", "yuv420p10le", "-c:v", "libvvenc"])
        m = re.search(r"vvenc[^\n]*?version\s*:?\s*(\S+)", banner, re.IGNORECASE) or \
            re.search(r"VVenC[^\n]*?(\d+\.\d+\.\d+)", banner)
        return f"vvenc {m.group(1)}" if m else "vvenc (version unknown)"


ANCHORS = {"x265": X265, "vvc": VVenC}


def build_anchor(name: str, **kwargs) -> Anchor:
    try:
        return ANCHORS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown anchor {name!r}; choose one of {', '.join(ANCHORS)}") from None
