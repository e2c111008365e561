"""Writing video: ``.mkv`` (lossless FFV1), ``.mp4`` (H.264), ``.y4m`` (a file or standard output) or a folder of
PNGs, tagged with the source's colour description, with the source's audio muxed in (``media.audio``).

Frames at this edge are uint8 RGB ``(H, W, 3)``. Every output is written under a temporary name and renamed into
place when complete, so no half-written file is ever left.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtok.codec.media.audio import AudioMuxer
from vtok.codec.media.info import Colour, VideoError

def partial_path(path) -> Path:
    """The hidden name an output is written under until it is complete: ``.NAME.part`` + its suffix."""
    path = Path(path)
    return path.with_name(f".{path.name}.part{path.suffix}")


def clear_partial(path, log=print) -> None:
    """Before writing ``path``: remove the partial output a killed run left under its hidden name, and name the
    other partial outputs left in the same folder (a run into that folder was killed before it could clean up)."""
    if str(path) == "-":
        return
    own = partial_path(path)
    if own.is_file():
        own.unlink()
        log(f"note: removed {own}, a partial output left by an interrupted run")
    others = sorted(p.name for p in Path(path).parent.glob(".*.part*") if p != own and ".part" in p.name)
    if others:
        log(f"note: {Path(path).parent} holds partial outputs of interrupted runs (not complete files; delete "
            f"them): {', '.join(others)}")


def check_output(path) -> None:
    """Raise if the folder an output file goes into does not exist (before any work is done); ``-`` is stdout."""
    if str(path) == "-":
        return
    path = Path(path)
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")


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
        self.tmp = partial_path(self.path)
        self.count = 0
        self.colour = colour or Colour()
        self._container = self._stream = self._file = self._muxer = None
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
                    self._muxer = AudioMuxer(self._container, *audio, edit_list=self.suffix in (".mp4", ".mov"))
        except OSError as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e.strerror or e}") from None
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {e}") from None

    @property
    def holds_audio(self) -> bool:
        return self._container is not None

    @property
    def transcoded(self) -> list[str]:
        """The audio codecs this output cannot hold, transcoded to AAC."""
        return self._muxer.transcoded if self._muxer is not None else []

    def write_audio(self, packets, time_bases, shift: float = 0.0) -> None:
        """Mux audio ``packets`` (``bitstream.audio.AudioPacket``) with timestamps ``shift`` seconds earlier;
        ``time_bases[i]`` is stream ``i``'s ``(num, den)``."""
        if self._muxer is not None:
            self._muxer.mux(packets, time_bases, shift)

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
                if self._muxer is not None:
                    self._muxer.flush()
                self._container.close()
                self._close_muxer()
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

    def _close_muxer(self) -> None:
        if self._muxer is not None:
            self._muxer.close()
            self._muxer = None

    def abort(self) -> None:
        """Drop everything written so far."""
        self._close_muxer()
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
