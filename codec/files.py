"""File flows of the codec (``vtok compress`` / ``vtok decompress`` of one file): thin wrappers of ``Codec`` over
video files. Pipes, progress lines and many files at once are the command line's (``bench/tools/batch.py``).

``compress_file``: probe the input and read its audio (``codec/media/read.py``), hand its frames GOP by GOP to
``Codec.compress_to`` (``codec/coding.py``), write the ``.vtok`` under a temporary name and rename it into place.
``decompress_file``: ``Codec.decompress_from`` GOP by GOP into a ``VideoWriter`` with the source's colour tags and
audio. Either way nothing half-written is left behind on an error.
"""

from __future__ import annotations

import contextlib
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtok.bitstream.errors import DamagedInput
from vtok.codec.search import Search, distortion_of
from vtok.codec.coded import DEFAULT_MAX_PIXELS, CodedFile, check_frame_area
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.loading import bundled_codec, load_codec
from vtok.codec.models.precision import resolved
from vtok.codec.media.info import Colour, VideoError
from vtok.codec.media.write import VideoWriter, check_output, clear_partial, partial_path
from vtok.codec.media.read import iter_frames, probe
from vtok.codec.media.audio import read_audio
from vtok.codec.models.streaming import FRAME_PIXELS


# Frames read into one piece before the encoder takes them (``_Gops``): eight 1080p frames, two at 2160p.
PIECE_PIXELS = 8 * FRAME_PIXELS


class _Gops:
    """Frames → GOPs of ``gop`` frames (the last may be shorter), each an iterator of pieces: uint8 arrays of
    consecutive frames of about ``PIECE_PIXELS`` pixels, filled in place, so that memory holds a piece of a GOP, not
    the GOP. A GOP's pieces must be taken before the next GOP. A frame of another shape than the one before it
    starts a new piece (the coder then reports the size change)."""

    def __init__(self, frames, gop: int):
        self.frames, self.gop = iter(frames), gop
        self.next = next(self.frames, None)

    def __iter__(self):
        while self.next is not None:
            yield self._pieces()

    def _pieces(self):
        left = self.gop
        while left and self.next is not None:
            shape = self.next.shape
            buf = np.empty((min(left, max(1, PIECE_PIXELS // (shape[0] * shape[1]))),) + shape, np.uint8)
            n = 0
            while n < len(buf) and self.next is not None and self.next.shape == shape:
                buf[n] = self.next
                n += 1
                self.next = next(self.frames, None)
            left -= n
            yield buf[:n]


def compress_file(src, out, model=None, prior=None, gop: int = DEFAULT_GOP, bits: int | None = None,
                  size=None, fps=None, max_frames: int | None = None, rate: int | None = None,
                  audio: bool = True, codec=None, workers: int = 1, ray: str | None = None, device: str = "cpu",
                  log=print, hold: float | None = None, preset: str | None = None, tune: str | None = None,
                  progress=None) -> dict:
    """Compress a video file to ``.vtok``. Returns a summary (frames, bytes, bpp, cross-entropy bits, fps).

    ``rate`` picks a point of the model's rate ladder (0 = smallest file); ``bits`` sets the bits per token directly
    at full size; neither codes the full tokens at full size. The input's audio streams are carried as they are
    (``audio=False`` drops them); bpp counts the video's bytes only. ``codec``: an already loaded ``Codec``;
    ``workers``: GOPs coded in that many processes, or Ray actors with ``ray`` (``codec.parallel``; the same bytes);
    ``device``: where the tokenizer runs (``cpu``, ``cuda``, ``auto``; the prior's integers are the same anywhere);
    ``hold``: the encoder's temporal hold (``Codec.hold``; None: the model's own); ``preset``/``tune``: the
    encoder's search (``codec/search.py``; default medium, the one-pass encoder, and perceptual).
    ``progress(frames, total, bpp)``: told after each GOP (``total``: the input's frame count, None if unknown).
    """
    out = Path(out)
    check_output(out)
    codec = codec or load_codec(model, prior, device)
    codec.settings(rate, bits)  # bad settings fail before any work
    hold, search = codec.hold(hold), Search.of(preset, tune)
    if search.steps:
        distortion_of(search.tune)  # a missing LPIPS backbone fails before any work
    info = probe(src, size, fps)
    _input_notes(src, info, log)
    sound = read_audio(src) if audio else None
    tmp = partial_path(out)
    clear_partial(out, log)
    t0 = time.perf_counter()
    total = max_frames or info.frames
    try:
        with open(tmp, "wb") as f:
            frames = iter_frames(src, max_frames=max_frames, size=size, fps=fps)
            s = codec.compress_to(f, _Gops(frames, gop), info.width, info.height, info.fps, rate, bits, gop,
                                  info.colour, sound, max_frames / info.fps if max_frames else None,
                                  progress and (lambda n, bpp: progress(n, total, bpp)), workers, ray, hold, search)
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    dt = time.perf_counter() - t0
    pixels = s["frames"] * info.width * info.height
    summary = {**s, "width": info.width, "height": info.height, "bpp": s["video_bytes"] * 8 / pixels,
               "fps": s["frames"] / dt, "model_id": codec.family_id}
    sound_note = f" (+ {s['audio_bytes']} bytes of audio)" if s["audio_bytes"] else ""
    log(f"{src} -> {out}: {s['frames']} frames {info.width}x{info.height}, {s['video_bytes']} bytes{sound_note}, "
        f"{summary['bpp']:.4f} bpp, {summary['fps']:.1f} fps")
    return summary


def _input_notes(src, info, log) -> None:
    """One note for each way the input is not coded as it is (deeper than 8 bits, a variable frame rate)."""
    if info.bit_depth > 8:
        log(f"note: {src} is {info.bit_depth}-bit video; vtok codes 8-bit RGB, so it was converted to 8 bits")
    if info.variable_rate:
        log(f"note: {src} has a variable frame rate; coded at a constant {info.fps} fps (its frame timestamps are "
            f"not kept)")


def decompress_file(src, out, model=None, prior=None, start: int = 0, frames: int | None = None,
                    audio: bool = True, codec=None, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 1,
                    ray: str | None = None, device: str = "cpu", log=print, strict: bool = False, warn=None,
                    progress=None, precision: str | None = None) -> dict:
    """Decode ``.vtok`` to a video file; ``start``/``frames`` pick a range and only its GOPs are decoded.

    The file's audio goes into ``.mkv`` / ``.mp4`` outputs, cut to the same time span (``audio=False``: left out). A
    file made by an earlier bundled default model is decoded with that model when no model is named.

    A damaged or truncated file decodes every intact GOP; a lost one is concealed (``Codec.decompress_from``), each
    damaged range is told to ``warn`` once the output is complete (one line; default: ``log``), and
    ``DamagedInput`` is raised. ``strict``: refuse a damaged file before writing anything. Nothing decodable: an
    error, no output. ``src``: a path, or a binary file object (``name`` it in messages by its ``name``);
    ``progress(frames, total, None)``: told as frames are written. ``precision``: the decoder's arithmetic
    (``codec/models/precision.py``; None: the codec's as it is, float32 unless set).
    """
    check_output(out)
    clear_partial(out, log)
    warn = warn or (lambda text: log(f"warning: {text}"))
    if not isinstance(src, (str, os.PathLike)):
        src_name, opened = getattr(src, "name", "input"), contextlib.nullcontext(src)
    else:
        src_name, opened = src, open(src, "rb")
    with opened as f:
        coded = CodedFile(f, strict)
        h = coded.header
        check_frame_area(h, max_pixels)
        codec = codec or load_codec(model, prior, device)
        if not codec.codes(h.model_id) and model is None and prior is None:
            codec = bundled_codec(h.model_id, device) or codec
        codec.check(coded, max_pixels)
        if precision is not None:
            codec.tokenizer.precision = resolved(precision, codec.tokenizer._device())
        end = coded.frames if frames is None else min(coded.frames, start + frames)
        lost = [p for p in coded.problems() if p.first is None or (p.first < end and p.end > start)]
        if not any(u.first_frame < end and u.first_frame + u.frames > start for u in coded.units):
            raise (coded.damage[0].error() if coded.damage else VideoError(f"{src_name}: no frames to decode"))
        failed, summary = _decode_into(coded, codec, src_name, out, (start, frames, end), audio, workers, ray, log,
                                       progress)
        lost += failed
    for p in lost:  # told once the output is complete (nothing usable: the one error line alone)
        warn(p.line())
    if lost:
        frames_lost = sum(min(p.end, end) - max(p.first, start) for p in lost if p.first is not None)
        raise DamagedInput(f"{src_name} is damaged: {out} was written with {frames_lost} of {end - start} frames concealed"
                           f"{' and audio lost' if any(p.first is None for p in lost) and coded.streams else ''} "
                           f"(`strict` refuses such files)")
    return summary


def _decode_into(coded, codec, src, out, span, audio, workers, ray, log, progress) -> tuple[list, dict]:
    """``decompress_file``'s decoding of frames ``span = (start, frames, end)`` into the writer; returns the
    ``Problem``s of GOPs that did not decode and the summary."""
    from vtok.codec.coded import Problem

    start, frames, end = span
    h = coded.header
    streams = coded.streams if audio else []
    keeps_audio = str(out) != "-" and Path(out).suffix.lower() in (".mkv", ".mp4", ".mov")
    failed = []

    def on_damage(first, stop, reason):
        failed.append(Problem(first, stop, reason))

    t0 = time.perf_counter()
    written = 0
    rate = Fraction(h.fps_num, h.fps_den)
    with VideoWriter(out, h.width, h.height, rate, Colour(h.matrix, h.full_range, h.primaries, h.transfer),
                     (streams, coded.description) if streams and keeps_audio else None) as w:
        if streams and not w.holds_audio:
            log(f"note: {'standard output' if str(out) == '-' else out} holds no audio: the file's {len(streams)} "
                f"audio stream(s) are not written (decode to .mkv or .mp4 to keep them)")
        for codec_name in w.transcoded:
            log(f"note: {Path(out).suffix} cannot hold {codec_name} audio: transcoded to AAC")
        tbs = [st.time_base for st in streams]
        for video, packets in codec.decompress_from(coded, start, frames, audio=bool(streams), workers=workers,
                                                      ray=ray, on_damage=on_damage):
            w.write(video)
            w.write_audio(packets, tbs, shift=float(start / rate))
            written += len(video)
            if progress is not None:
                progress(written, end - start, None)
        if failed and sum(p.end - p.first for p in failed) + sum(
                p.end - p.first for p in coded.problems() if p.first is not None) >= end - start:
            raise VideoError(f"no GOP of the file decodes: nothing written ({failed[0].reason})")
    dt = time.perf_counter() - t0
    log(f"{src} -> {out}: {written} frames {h.width}x{h.height}, {written / dt:.1f} fps")
    return failed, {"frames": written, "width": h.width, "height": h.height, "fps": written / dt}
