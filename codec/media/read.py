"""Reading video: anything PyAV (FFmpeg) opens, raw ``.yuv``, and standard input; finding the video files of folders.

Frames at this edge are uint8 RGB ``(H, W, 3)``; a clip is ``(T, H, W, 3)``.
Raw ``.yuv`` (8-bit 4:2:0) needs its size and rate: given explicitly, or read from a name such as
``videoSRC01_1920x1080_30.yuv`` (MCL-JCV's convention).

The source's colour description (matrix, range, primaries, transfer) is used to convert to RGB and reported by
``probe`` so that the writer can tag the output the same way; a rotated clip (display matrix) is turned upright as a
player shows it.
"""

from __future__ import annotations

import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from vtok.codec.media.info import Colour, VideoError, VideoInfo

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".mov", ".y4m", ".264", ".h264", ".yuv", ".m4v"}


def list_videos(paths, suffixes=VIDEO_SUFFIXES) -> list[Path]:
    """The given files, and the files of the given folders (searched recursively, sorted) whose suffix is one of
    ``suffixes`` (video files by default)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [q for q in sorted(p.rglob("*")) if q.suffix.lower() in suffixes and q.is_file()]
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


_YUV_NAME = re.compile(r"(\d+)x(\d+)(?:_(\d+(?:\.\d+)?))?")


def yuv_geometry(path, size: tuple[int, int] | None = None, fps=None) -> tuple[int, int, Fraction]:
    """Width, height and rate of a raw ``.yuv``: given, or parsed from the file name (``..._WxH_FPS.yuv``)."""
    m = None
    for m in _YUV_NAME.finditer(Path(path).stem):
        pass
    if size is None:
        if m is None:
            raise VideoError(f"{path}: raw .yuv needs its size (`size=WxH`) or a name like clip_1920x1080_30.yuv")
        size = (int(m.group(1)), int(m.group(2)))
    if fps is None:
        fps = m.group(3) if m is not None and m.group(3) else 30
    w, h = size
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise VideoError(f"{path}: raw 4:2:0 .yuv needs a positive even size, got {w}x{h}")
    return w, h, Fraction(str(fps)).limit_denominator(1001)


def spool_stdin(folder, raw: bool = False) -> Path:
    """Standard input copied into a file in ``folder`` (``stdin.yuv`` for raw 4:2:0 with ``raw``), so that it can be
    probed, read and its audio copied like any file: a pipe can be read only once."""
    path = Path(folder) / ("stdin.yuv" if raw else "stdin")
    with open(path, "wb") as f:
        while chunk := sys.stdin.buffer.read(1 << 20):
            f.write(chunk)
    if path.stat().st_size == 0:
        raise VideoError("standard input is empty: nothing to compress")
    return path


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
                kind = "audio only, " if c.streams.audio else ""
                raise VideoError(f"{path}: no video stream ({kind}nothing for vtok to code)")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or Fraction(30)
            cc = s.codec_context
            depth = max((comp.bits for comp in cc.format.components), default=8) if cc.format else 8
            first = next(iter(c.decode(s)), None)
            if first is None:
                raise VideoError(f"{path}: no frames decoded")
            colour = Colour(int(first.colorspace), int(first.color_range) == 2, int(first.color_primaries),
                            int(first.color_trc))
            rotation = int(round(first.rotation or 0)) % 360
            w, h = (cc.height, cc.width) if rotation in (90, 270) else (cc.width, cc.height)
            c.seek(0)
            vfr = _variable_rate(c, s)
            return VideoInfo(w, h, Fraction(rate), s.frames or None, colour, rotation, depth, vfr)
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, StopIteration) as e:
        raise VideoError(f"{path}: not a readable video ({e.__class__.__name__}: {e})") from None


def _variable_rate(container, stream, max_packets: int = 4000) -> bool:
    """Whether the first ``max_packets`` video packets' timestamps step unevenly (demuxed only, not decoded)."""
    pts = []
    for pkt in container.demux(stream):
        if pkt.pts is not None:
            pts.append(pkt.pts)
        if len(pts) >= max_packets:
            break
    if len(pts) < 3:
        return False
    steps = np.diff(np.sort(np.array(pts, np.int64)))
    steps = steps[steps > 0]
    if len(steps) < 2:
        return False
    med = float(np.median(steps))
    return bool(np.abs(steps - med).max() > max(1.0, 0.25 * med))


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


def _to_rgb(frame, resize) -> np.ndarray:
    """A decoded frame → uint8 RGB as displayed: its own matrix and range, turned upright by its rotation."""
    rot = int(round(frame.rotation or 0)) % 360
    w, h = (None, None) if resize is None else (resize[1], resize[0]) if rot in (90, 270) else resize
    rgb = frame.reformat(width=w, height=h, format="rgb24", src_color_range=frame.color_range,
                         interpolation="BICUBIC" if resize is not None else None).to_ndarray()
    return np.ascontiguousarray(np.rot90(rgb, rot // 90)) if rot in (90, 180, 270) else rgb


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
                yield _to_rgb(frame, resize)
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
