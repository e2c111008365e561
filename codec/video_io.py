"""The one place that opens video files: reading anything PyAV (FFmpeg) opens, raw ``.yuv``, and writing results.

Frames at this edge are uint8 RGB ``(H, W, 3)``; a clip is ``(T, H, W, 3)``.
Raw ``.yuv`` (8-bit 4:2:0) needs its size and rate: given explicitly, or read from a name such as
``videoSRC01_1920x1080_30.yuv`` (MCL-JCV's convention).

What a container carries besides the pictures is kept: the source's colour description (matrix, range, primaries,
transfer) is used to convert to RGB and written back as the output's tags; a rotated clip (display matrix) is turned
upright as a player shows it; audio streams are read as compressed packets (``read_audio``) and muxed back by stream
copy (``VideoWriter(audio=...)``), transcoded only where the output container cannot hold their codec.

Longer than most modules on purpose: it is the one module of ``codec/`` that opens media files (reading, writing,
colour, rotation and audio all touch the same containers), so that nothing else needs PyAV.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from bitstream.errors import VtokError
from bitstream.audio import NO_TS, AudioPacket, AudioStream, packet_seconds


class VideoError(VtokError, ValueError):
    """A video file cannot be read or written; the message says why, in one line."""


@dataclass
class Colour:
    """A colour description in ITU-T H.273 code points as FFmpeg numbers them (2 = unspecified)."""

    matrix: int = 2
    full_range: bool = False
    primaries: int = 2
    transfer: int = 2


@dataclass
class VideoInfo:
    """What ``probe`` finds. ``width``/``height`` are as displayed (after ``rotation``, degrees counter-clockwise)."""

    width: int
    height: int
    fps: Fraction
    frames: int | None  # None when the container does not say
    colour: Colour = field(default_factory=Colour)
    rotation: int = 0
    bit_depth: int = 8
    variable_rate: bool = False


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


def check_output(path) -> None:
    """Raise if the folder an output file goes into does not exist (before any work is done); ``-`` is stdout."""
    if str(path) == "-":
        return
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")


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


@dataclass
class AudioSource:
    """A file's audio streams as they are: descriptions, a Matroska ``description`` holding their codec parameters,
    and every compressed packet, timestamps made relative to the first video frame."""

    streams: list
    description: bytes
    packets: list

    def seconds(self, p) -> float:
        """A packet's presentation time in seconds (from the first video frame)."""
        return packet_seconds(p, self.streams)


def read_audio(path) -> AudioSource | None:
    """Every audio stream of a container file, without decoding (None: there is none, or the input is raw .yuv)."""
    if str(path).lower().endswith(".yuv"):
        return None
    import io

    import av
    from av.packet import packet_sidedata_type_from_literal

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return None
            video = c.streams.video[0] if c.streams.video else None
            v0 = float(video.start_time * video.time_base) if video is not None and video.start_time is not None \
                else 0.0
            streams, firsts, packets = [], {}, []
            index = {s.index: i for i, s in enumerate(c.streams.audio)}
            for s in c.streams.audio:
                cc = s.codec_context
                tb = s.time_base
                streams.append(AudioStream(cc.name, cc.sample_rate or 0, cc.channels or 0, (tb.numerator, tb.denominator)))
            for pkt in c.demux(*c.streams.audio):
                if not pkt.size:
                    continue
                i = index[pkt.stream.index]
                tb = pkt.stream.time_base
                shift = round(v0 / tb)
                firsts.setdefault(i, pkt)
                side = tuple((int(packet_sidedata_type_from_literal(sd.data_type)), bytes(sd))
                             for sd in pkt.iter_sidedata())
                packets.append(AudioPacket(i, NO_TS if pkt.pts is None else pkt.pts - shift,
                                           NO_TS if pkt.dts is None else pkt.dts - shift, pkt.duration or 0,
                                           bool(pkt.is_keyframe), bytes(pkt), side))
            # The codec parameters (extradata, layout, delay) travel as a small Matroska file with each stream's first
            # packet: PyAV can only set them up for muxing from a stream it has opened.
            buf = io.BytesIO()
            with av.open(buf, "w", format="matroska") as out:
                tracks = [out.add_stream_from_template(s) for s in c.streams.audio]
                for i, pkt in sorted(firsts.items()):
                    pkt.stream = tracks[i]
                    out.mux(pkt)
            return AudioSource(streams, buf.getvalue(), packets)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot read its audio ({e.__class__.__name__}: {e})") from None


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


def write_video(path, frames: np.ndarray, fps=30) -> None:
    """Write uint8 ``(T, H, W, 3)`` frames in one go (see ``VideoWriter`` for the formats)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise VideoError(f"expected uint8 frames (T, H, W, 3), got {frames.shape} {frames.dtype}")
    with VideoWriter(path, frames.shape[2], frames.shape[1], fps) as w:
        w.write(frames)


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


class VideoWriter:
    """Streaming writer: ``.mkv`` lossless FFV1 (RGB kept as RGB), ``.mp4`` H.264 (CRF 12), ``.y4m``, or a folder
    of PNGs when ``path`` has no suffix.

    ``colour`` (the source's description) tags the output and sets the RGB → YUV matrix and range of ``.mp4``.
    ``audio`` = ``(streams, description)`` of an ``AudioSource`` adds those streams to ``.mkv`` / ``.mp4`` (stream
    copy; a codec the container cannot hold is transcoded to AAC, listed in ``transcoded``); ``write_audio`` muxes
    their packets. ``.y4m`` and PNG folders hold no audio (``holds_audio`` is False).

    Frames go to a temporary name that ``close()`` renames into place; ``abort()`` (or leaving the ``with`` block
    by an exception) removes it, so no half-written output is ever left.
    """

    def __init__(self, path, width: int, height: int, fps=30, colour: Colour | None = None, audio=None):
        import av

        self.stdout = str(path) == "-"  # Y4M to standard output: nothing to rename, nothing to take back
        self.path = Path("stdout.y4m" if self.stdout else path)
        if not self.stdout and not self.path.parent.exists():
            raise VideoError(f"output folder {self.path.parent} does not exist")
        self.width, self.height = int(width), int(height)
        self.rate = fps if isinstance(fps, Fraction) else Fraction(str(fps)).limit_denominator(1001)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in ("", ".y4m", ".mp4", ".mkv", ".mov"):
            raise VideoError(f"{self.path}: unsupported output type {self.suffix!r} (use .mkv, .mp4, .y4m or a folder)")
        self.tmp = self.path.with_name(f".{self.path.name}.part{self.suffix}")
        self.count = 0
        self.colour = colour or Colour()
        self.transcoded: list[str] = []
        self._container = self._stream = self._file = self._desc = None
        self._audio: list = []
        odd = self.width % 2 or self.height % 2
        try:
            if self.suffix == "":
                self.tmp.mkdir(exist_ok=True)
            elif self.suffix == ".y4m":
                self._file = sys.stdout.buffer if self.stdout else open(self.tmp, "wb")
                cs = "444" if odd else "420jpeg"
                self._y4m_fmt = "yuv444p" if odd else "yuv420p"
                self._file.write(f"YUV4MPEG2 W{self.width} H{self.height} F{self.rate.numerator}:"
                                 f"{self.rate.denominator} Ip A1:1 C{cs}\n".encode())
            else:
                self._container = av.open(str(self.tmp), "w")
                cc_tags = {"color_primaries": self.colour.primaries, "color_trc": self.colour.transfer}
                if self.suffix == ".mkv":
                    self._stream = self._container.add_stream("ffv1", rate=self.rate)
                    self._stream.pix_fmt = "bgr0"
                    cc_tags.update(colorspace=0, color_range=2)  # RGB, full range
                else:
                    self._stream = self._container.add_stream("libx264", rate=self.rate,
                                                              options={"crf": "12", "preset": "medium"})
                    self._stream.pix_fmt = "yuv444p" if odd else "yuv420p"
                    cc_tags.update(colorspace=self.colour.matrix, color_range=2 if self.colour.full_range else 1)
                self._stream.width, self._stream.height = self.width, self.height
                for k, v in cc_tags.items():
                    setattr(self._stream.codec_context, k, v)
                if audio is not None:
                    self._add_audio(*audio)
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e}") from None

    @property
    def holds_audio(self) -> bool:
        return self._container is not None

    def _add_audio(self, streams, description: bytes) -> None:
        """One output stream per described audio stream: a copy of it, or an AAC encoder fed by its decoder."""
        import io

        import av

        self._desc = av.open(io.BytesIO(description), format="matroska")  # kept open: the templates live in it
        supported = self._container.supported_codecs
        for info, template in zip(streams, self._desc.streams.audio):
            if info.codec in supported:
                self._audio.append((self._container.add_stream_from_template(template), None))
                continue
            dec = template.codec_context  # a decoder context with the stream's parameters
            layout = _DEFAULT_LAYOUTS.get(dec.channels, "stereo")  # "1 channels" (no order) → mono
            enc = self._container.add_stream("aac", rate=dec.sample_rate)
            enc.codec_context.layout = layout
            enc.codec_context.format = "fltp"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=dec.sample_rate)
            self._audio.append((enc, (dec, resampler)))
            self.transcoded.append(info.codec)

    def write_audio(self, packets, time_bases, shift: float = 0.0) -> None:
        """Mux audio ``packets`` (``bitstream.audio.AudioPacket``) with timestamps ``shift`` seconds earlier;
        ``time_bases[i]`` is stream ``i``'s ``(num, den)``."""
        import av
        from av.packet import PacketSideData

        if not self._audio:
            return
        for p in packets:
            num, den = time_bases[p.stream]
            tb = Fraction(num, den)
            off = round(Fraction(shift).limit_denominator(10 ** 6) / tb)
            if shift > 0 and self.suffix not in (".mp4", ".mov") and p.pts != NO_TS and p.pts < off:
                # A cut's pre-roll packets (before its first frame) need an edit list to be decoded and then
                # dropped; Matroska has none, and its muxer would shift the whole track to hold them.
                continue
            out, transcode = self._audio[p.stream]
            pkt = av.Packet(p.data)
            pkt.pts = None if p.pts == NO_TS else p.pts - off
            pkt.dts = None if p.dts == NO_TS else p.dts - off
            pkt.duration = p.duration
            pkt.time_base = tb
            pkt.is_keyframe = p.keyframe
            for kind, data in p.side_data:
                sd = PacketSideData(kind, len(data))
                sd.update(data)
                pkt.set_sidedata(sd)
            if transcode is None:
                pkt.stream = out
                self._container.mux(pkt)
                continue
            dec, resampler = transcode
            for frame in dec.decode(pkt):
                frame.pts = None
                for rf in resampler.resample(frame):
                    self._container.mux(out.encode(rf))

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
                    if self.suffix != ".mkv":  # RGB → YUV with the source's matrix and range
                        vf = vf.reformat(format=self._stream.pix_fmt, dst_colorspace=self._sws_matrix(),
                                         dst_color_range=2 if self.colour.full_range else 1)
                    for pkt in self._stream.encode(vf):
                        self._container.mux(pkt)
                self.count += 1
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _sws_matrix(self):
        # swscale knows BT.709, FCC, BT.601 (470BG / 170M), SMPTE 240M and BT.2020; anything else: BT.601
        return self.colour.matrix if self.colour.matrix in (1, 4, 5, 6, 7, 9) else 5

    def close(self) -> None:
        try:
            if self._container is not None:
                for pkt in self._stream.encode():
                    self._container.mux(pkt)
                for out, transcode in self._audio:
                    if transcode is not None:
                        self._container.mux(out.encode(None))
                self._container.close()
                self._close_description()
                self._container = None
            if self._file is not None:
                self._file.flush() if self.stdout else self._file.close()
                self._file = None
            if self.stdout:
                return
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

    def _close_description(self) -> None:
        if self._desc is not None:
            self._desc.close()
            self._desc = None

    def abort(self) -> None:
        """Drop everything written so far."""
        self._close_description()
        if self.stdout:  # what went out is gone; stop writing
            self._file = None
            return
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
