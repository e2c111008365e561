"""The one place that opens video files: reading anything PyAV (FFmpeg) opens, raw ``.yuv``, and writing results.

Frames at this edge are uint8 RGB ``(H, W, 3)``; a clip is ``(T, H, W, 3)``.
Raw ``.yuv`` (8-bit 4:2:0) needs its size and rate: given explicitly, or read from a name such as
``videoSRC01_1920x1080_30.yuv`` (MCL-JCV's convention).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np


class VideoError(ValueError):
    """A video file cannot be read or written; the message says why, in one line."""


@dataclass
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    frames: int | None  # None when the container does not say


_YUV_NAME = re.compile(r"(\d+)x(\d+)(?:_(\d+(?:\.\d+)?))?")


def yuv_geometry(path, size: tuple[int, int] | None = None, fps=None) -> tuple[int, int, Fraction]:
    """Width, height and rate of a raw ``.yuv``: given, or parsed from the file name (``..._WxH_FPS.yuv``)."""
    m = None
    for m in _YUV_NAME.finditer(Path(path).stem):
        pass
    if size is None:
        if m is None:
            raise VideoError(f"{path}: raw .yuv needs its size (--size WxH) or a name like clip_1920x1080_30.yuv")
        size = (int(m.group(1)), int(m.group(2)))
    if fps is None:
        fps = m.group(3) if m is not None and m.group(3) else 30
    w, h = size
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise VideoError(f"{path}: raw 4:2:0 .yuv needs a positive even size, got {w}x{h}")
    return w, h, Fraction(str(fps)).limit_denominator(1001)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of uint8 ``(T, H, W, 3)`` frames to ``size`` = (width, height) (FFmpeg's swscale)."""
    import av

    out = []
    for fr in frames:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")
        out.append(vf.reformat(width=size[0], height=size[1], interpolation="BICUBIC").to_ndarray())
    return np.stack(out)


def _iter_yuv(path, size, fps, start: int, size_out) -> Iterator[np.ndarray]:
    import av

    w, h, _ = yuv_geometry(path, size, fps)
    frame_bytes = w * h * 3 // 2
    n = os.path.getsize(path) // frame_bytes
    if n == 0:
        raise VideoError(f"{path}: no complete {w}x{h} 4:2:0 frame in the file")
    with open(path, "rb") as f:
        f.seek(start * frame_bytes)
        while True:
            buf = f.read(frame_bytes)
            if len(buf) < frame_bytes:
                return
            yuv = np.frombuffer(buf, np.uint8).reshape(h * 3 // 2, w)
            vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            out = vf.reformat(width=size_out[0] if size_out else w, height=size_out[1] if size_out else h,
                              format="rgb24", interpolation="BICUBIC")
            yield out.to_ndarray()


def probe(path, size=None, fps=None) -> VideoInfo:
    """Size, rate and (when known) frame count of a video file."""
    path = str(path)
    if path.lower().endswith(".yuv"):
        w, h, r = yuv_geometry(path, size, fps)
        return VideoInfo(w, h, r, os.path.getsize(path) // (w * h * 3 // 2))
    import av

    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise VideoError(f"{path}: no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or Fraction(30)
            return VideoInfo(s.codec_context.width, s.codec_context.height, Fraction(rate), s.frames or None)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: not a readable video ({e.__class__.__name__}: {e})") from None


def has_audio(path) -> bool:
    """Whether a container file has an audio stream (raw .yuv and unreadable files: False)."""
    if str(path).lower().endswith(".yuv"):
        return False
    import av

    try:
        with av.open(str(path)) as c:
            return bool(c.streams.audio)
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def iter_frames(path, start: int = 0, max_frames: int | None = None, resize: tuple[int, int] | None = None,
                size: tuple[int, int] | None = None, fps=None, step: int = 1) -> Iterator[np.ndarray]:
    """Yield uint8 RGB frames ``(H, W, 3)`` from frame ``start``, every ``step``-th, at most ``max_frames``.

    ``resize`` = (width, height) resizes (bicubic); ``size`` / ``fps`` describe a raw ``.yuv``.
    """
    path = str(path)
    count = 0
    if path.lower().endswith(".yuv"):
        source = _iter_yuv(path, size, fps, start, resize)
        start = 0
    else:
        source = _iter_container(path, resize)
    try:
        for i, frame in enumerate(source):
            if i < start or (i - start) % step:
                continue
            yield frame
            count += 1
            if max_frames is not None and count >= max_frames:
                return
    finally:
        source.close()


def _iter_container(path: str, resize) -> Iterator[np.ndarray]:
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: not a readable video ({e.__class__.__name__}: {e})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if resize is not None:
                    frame = frame.reformat(width=resize[0], height=resize[1], format="rgb24", interpolation="BICUBIC")
                yield frame.to_ndarray(format="rgb24")
        except av.error.InvalidDataError as e:
            raise VideoError(f"{path}: damaged video data ({e})") from None
    finally:
        container.close()


def read_video(path, start: int = 0, max_frames: int | None = None, resize=None, size=None, fps=None,
               step: int = 1) -> np.ndarray:
    """All requested frames as one uint8 array ``(T, H, W, 3)``; raises VideoError if there are none."""
    frames = list(iter_frames(path, start, max_frames, resize, size, fps, step))
    if not frames:
        raise VideoError(f"{path}: no frames decoded")
    return np.stack(frames)


def write_video(path, frames: np.ndarray, fps=30) -> None:
    """Write uint8 ``(T, H, W, 3)`` frames in one go (see ``VideoWriter`` for the formats)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise VideoError(f"expected uint8 frames (T, H, W, 3), got {frames.shape} {frames.dtype}")
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps) as w:
        w.write(frames)


class VideoWriter:
    """Streaming writer: ``.mkv`` lossless FFV1 (RGB kept as RGB), ``.mp4`` H.264 (CRF 12), ``.y4m``, or a folder
    of PNGs when ``path`` has no suffix.

    Frames go to a temporary name that ``close()`` renames into place; ``abort()`` (or leaving the ``with`` block
    by an exception) removes it, so no half-written output is ever left.
    """

    def __init__(self, path, width: int, height: int, fps=30):
        import av

        self.path = Path(path)
        if not self.path.parent.exists():
            raise VideoError(f"output folder {self.path.parent} does not exist")
        self.width, self.height = int(width), int(height)
        self.rate = fps if isinstance(fps, Fraction) else Fraction(str(fps)).limit_denominator(1001)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in ("", ".y4m", ".mp4", ".mkv", ".mov"):
            raise VideoError(f"{self.path}: unsupported output type {self.suffix!r} (use .mkv, .mp4, .y4m or a folder)")
        self.tmp = self.path.with_name(f".{self.path.name}.part{self.suffix}")
        self.count = 0
        self._container = self._stream = self._file = None
        odd = self.width % 2 or self.height % 2
        try:
            if self.suffix == "":
                self.tmp.mkdir(exist_ok=True)
            elif self.suffix == ".y4m":
                self._file = open(self.tmp, "wb")
                cs = "444" if odd else "420jpeg"
                self._y4m_fmt = "yuv444p" if odd else "yuv420p"
                self._file.write(f"YUV4MPEG2 W{self.width} H{self.height} F{self.rate.numerator}:"
                                 f"{self.rate.denominator} Ip A1:1 C{cs}\n".encode())
            else:
                self._container = av.open(str(self.tmp), "w")
                if self.suffix == ".mkv":
                    self._stream = self._container.add_stream("ffv1", rate=self.rate)
                    self._stream.pix_fmt = "bgr0"
                else:
                    self._stream = self._container.add_stream("libx264", rate=self.rate,
                                                              options={"crf": "12", "preset": "medium"})
                    self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
                self._stream.width, self._stream.height = self.width, self.height
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None

    def write(self, frames: np.ndarray) -> None:
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise VideoError(f"expected uint8 frames ({self.height}, {self.width}, 3), got {frames.shape[1:]} "
                             f"{frames.dtype}")
        try:
            for fr in frames:
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")
                if self.suffix == "":
                    vf.to_image().save(self.tmp / f"{self.count:06d}.png")
                elif self.suffix == ".y4m":
                    self._file.write(b"FRAME\n")
                    self._file.write(_planes(vf.reformat(format=self._y4m_fmt)))
                else:
                    for pkt in self._stream.encode(vf):
                        self._container.mux(pkt)
                self.count += 1
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        try:
            if self._container is not None:
                for pkt in self._stream.encode():
                    self._container.mux(pkt)
                self._container.close()
                self._container = None
            if self._file is not None:
                self._file.close()
                self._file = None
            if self.suffix == "":
                self.path.mkdir(exist_ok=True)
                for p in sorted(self.tmp.iterdir()):
                    p.replace(self.path / p.name)
                self.tmp.rmdir()
            else:
                self.tmp.replace(self.path)
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None

    def abort(self) -> None:
        """Drop everything written so far."""
        for closer in (self._container, self._file):
            try:
                if closer is not None:
                    closer.close()
            except Exception:  # already failing: the temporary output is removed below either way
                pass
        self._container = self._file = None
        if self.tmp.is_dir():
            for p in self.tmp.iterdir():
                p.unlink()
            self.tmp.rmdir()
        elif self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _planes(frame) -> bytes:
    """The raw planes of a planar YUV frame, without line padding."""
    out = []
    for plane in frame.planes:
        a = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
        out.append(np.ascontiguousarray(a).tobytes())
    return b"".join(out)
