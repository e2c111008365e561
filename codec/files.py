"""File flows of the codec (``vtok compress`` / ``vtok decompress``): thin wrappers of ``Codec`` over video files.

``compress_file``: probe the input and read its audio (``codec/media/read.py``), hand its frames GOP by GOP to
``Codec.compress_to`` (``codec/coding.py``), write the ``.vtok`` under a temporary name and rename it into place.
``decompress_file``: ``Codec.decompress_from`` GOP by GOP into a ``VideoWriter`` with the source's colour tags and
audio. Either way nothing half-written is left behind on an error.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vtok.bitstream.errors import DamagedInput, VtokError
from vtok.codec.search import Search, distortion_of
from vtok.codec.coded import DEFAULT_MAX_PIXELS, CodedFile, check_frame_area
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.loading import bundled_codec, load_codec
from vtok.codec.media.info import Colour, VideoError
from vtok.codec.media.write import VideoWriter, check_output, clear_partial, partial_path
from vtok.codec.media.read import iter_frames, probe, spool_stdin
from vtok.codec.media.audio import read_audio
from vtok.codec.models.streaming import FRAME_PIXELS


class _Progress:
    """A small progress line on stderr (frames, fps, running bpp); silent when ``quiet``."""

    def __init__(self, total: int | None, quiet: bool, what: str):
        self.quiet, self.total, self.what = quiet or not sys.stderr.isatty(), total, what
        self.t0 = time.perf_counter()

    def update(self, frames: int, bpp: float | None = None) -> None:
        if self.quiet:
            return
        fps = frames / max(1e-9, time.perf_counter() - self.t0)
        tot = f"/{self.total}" if self.total else ""
        rate = f", {bpp:.4f} bpp" if bpp is not None else ""
        print(f"\r{self.what}: {frames}{tot} frames, {fps:.1f} fps{rate}   ", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.quiet:
            print(file=sys.stderr)


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
                  size=None, fps=None, max_frames: int | None = None, quiet: bool = False, rate: int | None = None,
                  audio: bool = True, codec=None, workers: int = 1, ray: str | None = None, device: str = "cpu",
                  log=print, hold: float | None = None, preset: str | None = None, tune: str | None = None) -> dict:
    """Compress a video file to ``.vtok``. Returns a summary (frames, bytes, bpp, cross-entropy bits, fps).

    ``rate`` picks a point of the model's rate ladder (0 = smallest file); ``bits`` sets the bits per token directly
    at full size; neither codes the full tokens at full size. The input's audio streams are carried as they are
    (``audio=False`` drops them); bpp counts the video's bytes only. ``codec``: an already loaded ``Codec``;
    ``workers``: GOPs coded in that many processes, or Ray actors with ``ray`` (``codec.parallel``; the same bytes);
    ``device``: where the tokenizer runs (``cpu``, ``cuda``, ``auto``; the prior's integers are the same anywhere);
    ``hold``: the encoder's temporal hold (``Codec.hold``; None: the model's own); ``preset``/``tune``: the
    encoder's search (``codec/search.py``; default medium, the one-pass encoder, and perceptual).
    """
    if str(src) == "-" or str(out) == "-":  # pipes: spool through files, then the flow below
        with tempfile.TemporaryDirectory(prefix="vtok-") as d:
            check_output(out)
            src2 = spool_stdin(d, raw=size is not None) if str(src) == "-" else src
            out2 = Path(d) / "out.vtok" if str(out) == "-" else out
            summary = compress_file(src2, out2, model, prior, gop, bits, size, fps, max_frames, quiet, rate, audio,
                                    codec, workers, ray, device, log, hold, preset, tune)
            if str(out) == "-":
                with open(out2, "rb") as f:
                    shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return summary
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
    bar = _Progress(max_frames or info.frames, quiet, "compress")
    try:
        with open(tmp, "wb") as f:
            frames = iter_frames(src, max_frames=max_frames, size=size, fps=fps)
            s = codec.compress_to(f, _Gops(frames, gop), info.width, info.height, info.fps, rate, bits, gop,
                                  info.colour, sound, max_frames / info.fps if max_frames else None, bar.update,
                                  workers, ray, hold, search)
        tmp.replace(out)
    finally:
        bar.close()
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
                    quiet: bool = False, audio: bool = True, codec=None, max_pixels: int = DEFAULT_MAX_PIXELS,
                    workers: int = 1, ray: str | None = None, device: str = "cpu", log=print, strict: bool = False,
                    warn=None) -> dict:
    """Decode ``.vtok`` to a video file; ``start``/``frames`` pick a range and only its GOPs are decoded.

    The file's audio goes into ``.mkv`` / ``.mp4`` outputs, cut to the same time span (``audio=False``: left out). A
    file made by an earlier bundled default model is decoded with that model when no model is named.

    A damaged or truncated file decodes every intact GOP; a lost one is concealed (``Codec.decompress_from``), each
    damaged range is told to ``warn`` once the output is complete (one line; default: stderr), and ``DamagedInput``
    is raised. ``strict``: refuse a damaged file before writing anything. Nothing decodable: an error, no output.
    """
    check_output(out)
    clear_partial(out, log)
    warn = warn or (lambda text: print(f"vtok: warning: {text}", file=sys.stderr))
    with (io.BytesIO(sys.stdin.buffer.read()) if str(src) == "-" else open(src, "rb")) as f:
        coded = CodedFile(f, strict)
        h = coded.header
        check_frame_area(h, max_pixels)
        codec = codec or load_codec(model, prior, device)
        if not codec.codes(h.model_id) and model is None and prior is None:
            codec = bundled_codec(h.model_id, device) or codec
        codec.check(coded, max_pixels)
        end = coded.frames if frames is None else min(coded.frames, start + frames)
        lost = [p for p in coded.problems() if p.first is None or (p.first < end and p.end > start)]
        if not any(u.first_frame < end and u.first_frame + u.frames > start for u in coded.units):
            raise (coded.damage[0].error() if coded.damage else VideoError(f"{src}: no frames to decode"))
        failed, summary = _decode_into(coded, codec, src, out, (start, frames, end), audio, quiet, workers, ray, log)
        lost += failed
    for p in lost:  # told once the output is complete (nothing usable: the one error line alone)
        warn(p.line())
    if lost:
        frames_lost = sum(min(p.end, end) - max(p.first, start) for p in lost if p.first is not None)
        raise DamagedInput(f"{src} is damaged: {out} was written with {frames_lost} of {end - start} frames concealed"
                           f"{' and audio lost' if any(p.first is None for p in lost) and coded.streams else ''} "
                           f"(`strict` refuses such files)")
    return summary


def _decode_into(coded, codec, src, out, span, audio, quiet, workers, ray, log) -> tuple[list, dict]:
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
    bar = _Progress(max(0, end - start), quiet, "decompress")
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
            bar.update(written)
        if failed and sum(p.end - p.first for p in failed) + sum(
                p.end - p.first for p in coded.problems() if p.first is not None) >= end - start:
            raise VideoError(f"no GOP of the file decodes: nothing written ({failed[0].reason})")
    bar.close()
    dt = time.perf_counter() - t0
    log(f"{src} -> {out}: {written} frames {h.width}x{h.height}, {written / dt:.1f} fps")
    return failed, {"frames": written, "width": h.width, "height": h.height, "fps": written / dt}


class BatchFailed(VtokError, RuntimeError):
    """Some inputs of a batch failed (each was reported on its own line)."""


def batch_jobs(inputs, out_dir, suffixes, out_suffix: str) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs for files and folders (searched recursively for ``suffixes``) into ``out_dir``:
    each output named after its input's stem with ``out_suffix``."""
    from vtok.codec.media.read import list_videos

    files = []
    for p in map(Path, inputs):
        files += list_videos([p], suffixes) if p.exists() else [p]  # a missing file fails on its own line later
    pairs, seen = [], {}
    for f in files:
        out = Path(out_dir) / (f.stem + out_suffix)
        if out in seen:
            raise ValueError(f"{f} and {seen[out]} would both be written to {out}: give them different names")
        seen[out] = f
        pairs.append((f, out))
    if not pairs:
        raise ValueError(f"no input files in {', '.join(map(str, inputs))}")
    return pairs


def run_batch(pairs, code_one, skip_existing: bool = False, complete=Path.exists, quiet: bool = False,
              log=print) -> dict:
    """Run ``code_one(src, dst)`` for every pair with a progress bar over the files; an input that fails is reported
    in one line and the others go on; with ``skip_existing`` an output that exists and is ``complete`` is skipped.
    Raises ``BatchFailed`` after the summary if any input failed, else ``DamagedInput`` if any was damaged (its
    output written with concealed frames)."""
    from tqdm import tqdm

    done, skipped, failed, damaged = [], [], [], []
    bar = tqdm(pairs, unit="file", disable=quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
    for src, dst in bar:
        if skip_existing and dst.exists() and complete(dst):
            skipped.append(str(src))
            continue
        try:
            code_one(src, dst)
            done.append(str(src))
        except DamagedInput as e:
            damaged.append(str(src))
            print(f"vtok: warning: {e}", file=sys.stderr)
        except (VtokError, OSError, ValueError, RuntimeError) as e:
            failed.append(str(src))
            print(f"vtok: error: {src}: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}",
                  file=sys.stderr)
    log(f"{len(done)} done, {len(skipped)} skipped (complete output already there), {len(damaged)} damaged "
        f"(written with concealed frames), {len(failed)} failed, of {len(pairs)} inputs")
    if failed:
        raise BatchFailed(f"{len(failed)} of {len(pairs)} inputs failed: {', '.join(failed)}")
    if damaged:
        raise DamagedInput(f"{len(damaged)} of {len(pairs)} inputs were damaged: {', '.join(damaged)}")
    return {"done": done, "skipped": skipped, "failed": failed, "damaged": damaged}


def vtok_complete(path) -> bool:
    """A ``.vtok`` file that is whole: every unit intact up to an end unit whose counts agree (a run stopped
    half-way leaves none: outputs are renamed into place when complete)."""
    from vtok.bitstream.info import file_info

    try:
        return file_info(path)["complete"]
    except (VtokError, OSError):
        return False


def compress_many(inputs, out_dir, model=None, prior=None, skip_existing: bool = False, quiet: bool = False,
                  device: str = "cpu", log=print, **kw) -> dict:
    """``vtok compress a.mp4 b.mkv clips/ -o out/``: one ``.vtok`` per input video, the model loaded once."""
    from vtok.codec.media.read import VIDEO_SUFFIXES

    pairs = batch_jobs(inputs, out_dir, VIDEO_SUFFIXES, ".vtok")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    codec = load_codec(model, prior, device)
    return run_batch(pairs, lambda s, d: compress_file(s, d, codec=codec, quiet=True, log=lambda *a: None, **kw),
                     skip_existing, vtok_complete, quiet, log)


def decompress_many(inputs, out_dir, model=None, prior=None, suffix: str = ".mkv", skip_existing: bool = False,
                    quiet: bool = False, device: str = "cpu", log=print, **kw) -> dict:
    """``vtok decompress a.vtok clips/ -o out/``: one video per ``.vtok`` input (``suffix``: its container)."""
    pairs = batch_jobs(inputs, out_dir, {".vtok"}, suffix)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    codec = load_codec(model, prior, device)
    return run_batch(pairs, lambda s, d: decompress_file(s, d, codec=codec, quiet=True, log=lambda *a: None, **kw),
                     skip_existing, Path.exists, quiet, log)


def default_workers(workers: int = 0, ray: str | None = None) -> int:
    """``workers``, 0 meaning half the CPUs (at least 1: a process of its own costs a model load and a start-up);
    with ``ray``, 0 stays: one actor per two CPUs of the cluster."""
    return workers if workers > 0 or ray is not None else max(1, (os.cpu_count() or 2) // 2)


def compress_inputs(input, output, skip_existing: bool = False, gop: int | None = None, workers: int = 0,
                    ray: str | None = None, **kw) -> dict:
    """``vtok compress``: one input (a file or ``-``) to one ``.vtok``, or several files and folders into the folder
    ``output``; the other arguments as ``compress_file`` takes them. Returns the summary."""
    kw.update(gop=gop or DEFAULT_GOP, workers=default_workers(workers, ray), ray=ray)
    if len(input) > 1 or os.path.isdir(input[0]):
        return compress_many(input, output, skip_existing=skip_existing, **kw)
    return compress_file(input[0], output, **kw)


def decompress_inputs(input, output, skip_existing: bool = False, format: str = "mkv",
                      max_pixels: int | None = None, workers: int = 0, ray: str | None = None, **kw) -> dict:
    """``vtok decompress``: one ``.vtok`` (or ``-``) to one video, or several files and folders into the folder
    ``output`` as ``.{format}``; the other arguments as ``decompress_file`` takes them. Returns the summary."""
    kw.update(max_pixels=max_pixels or DEFAULT_MAX_PIXELS, workers=default_workers(workers, ray), ray=ray)
    if len(input) > 1 or os.path.isdir(input[0]):
        return decompress_many(input, output, suffix="." + format, skip_existing=skip_existing, **kw)
    return decompress_file(input[0], output, **kw)
