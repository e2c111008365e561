"""``vtok compress`` / ``vtok decompress`` as the command line runs them: pipes (``-``), a progress line on stderr,
many files at once, and the one-line report of each. The single-file flows are the codec's (``codec/files.py``).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from vtok.bitstream.errors import DamagedInput, VtokError
from vtok.codec.coded import DEFAULT_MAX_PIXELS
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.files import compress_file, decompress_file
from vtok.codec.loading import load_codec
from vtok.codec.media.read import spool_stdin
from vtok.codec.media.write import check_output


class ProgressLine:
    """A progress line on stderr (frames, fps, running bpp), rewritten in place; silent when ``quiet`` or when
    stderr is not a terminal. ``update(frames, total, bpp)`` is the file flows' ``progress``."""

    def __init__(self, what: str, quiet: bool = False):
        self.quiet, self.what = quiet or not sys.stderr.isatty(), what
        self.t0, self.shown = time.perf_counter(), False

    def update(self, frames: int, total: int | None = None, bpp: float | None = None) -> None:
        if self.quiet:
            return
        fps = frames / max(1e-9, time.perf_counter() - self.t0)
        tot = f"/{total}" if total else ""
        rate = f", {bpp:.4f} bpp" if bpp is not None else ""
        print(f"\r{self.what}: {frames}{tot} frames, {fps:.1f} fps{rate}   ", end="", file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def as_flags(text: str) -> str:
    """A message of the codec, which names parameters as ``name`` or ``name=VALUE`` in backquotes, in the command
    line's words: ``--name`` / ``--name VALUE`` (underscores as dashes)."""
    return re.sub(r"`([a-z_]+)(?:=([^`]*))?`",
                  lambda m: "--" + m[1].replace("_", "-") + (f" {m[2]}" if m[2] else ""), text)


def warn_line(text: str) -> None:
    print(f"vtok: warning: {as_flags(text)}", file=sys.stderr)


def compress_one(src, out, quiet: bool = False, size=None, **kw) -> dict:
    """``compress_file`` from a path or ``-`` (standard input, spooled to a file first) to a path or ``-``
    (standard output, written once the file is complete), with a progress line."""
    if str(src) == "-" or str(out) == "-":
        with tempfile.TemporaryDirectory(prefix="vtok-") as d:
            check_output(out)
            src2 = spool_stdin(d, raw=size is not None) if str(src) == "-" else src
            out2 = Path(d) / "out.vtok" if str(out) == "-" else out
            summary = compress_one(src2, out2, quiet, size, **kw)
            if str(out) == "-":
                with open(out2, "rb") as f:
                    shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return summary
    bar = ProgressLine("compress", quiet)
    try:
        return compress_file(src, out, size=size, progress=bar.update, **kw)
    finally:
        bar.close()


def decompress_one(src, out, quiet: bool = False, **kw) -> dict:
    """``decompress_file`` from a path or ``-`` (standard input, read to its end) with a progress line; damaged
    ranges are warned about on stderr."""
    bar = ProgressLine("decompress", quiet)
    try:
        if str(src) == "-":
            data = io.BytesIO(sys.stdin.buffer.read())
            data.name = "-"
            return decompress_file(data, out, progress=bar.update, warn=warn_line, **kw)
        return decompress_file(src, out, progress=bar.update, warn=warn_line, **kw)
    finally:
        bar.close()


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
            warn_line(str(e))
        except (VtokError, OSError, ValueError, RuntimeError) as e:
            failed.append(str(src))
            print(f"vtok: error: {src}: {as_flags(str(e).splitlines()[0]) if str(e) else e.__class__.__name__}",
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
    return run_batch(pairs, lambda s, d: compress_file(s, d, codec=codec, log=lambda *a: None, **kw),
                     skip_existing, vtok_complete, quiet, log)


def decompress_many(inputs, out_dir, model=None, prior=None, suffix: str = ".mkv", skip_existing: bool = False,
                    quiet: bool = False, device: str = "cpu", log=print, **kw) -> dict:
    """``vtok decompress a.vtok clips/ -o out/``: one video per ``.vtok`` input (``suffix``: its container)."""
    pairs = batch_jobs(inputs, out_dir, {".vtok"}, suffix)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    codec = load_codec(model, prior, device)
    return run_batch(pairs, lambda s, d: decompress_file(s, d, codec=codec, log=lambda *a: None, warn=warn_line,
                                                         **kw),
                     skip_existing, Path.exists, quiet, log)


def default_workers(workers: int = 0, ray: str | None = None) -> int:
    """``workers``, 0 meaning half the CPUs (at least 1: a process of its own costs a model load and a start-up);
    with ``ray``, 0 stays: one actor per two CPUs of the cluster."""
    return workers if workers > 0 or ray is not None else max(1, (os.cpu_count() or 2) // 2)


def compress_inputs(input, output, skip_existing: bool = False, gop: int | None = None, workers: int = 0,
                    ray: str | None = None, quiet: bool = False, **kw) -> dict:
    """``vtok compress``: one input (a file or ``-``) to one ``.vtok``, or several files and folders into the folder
    ``output``; the other arguments as ``compress_file`` takes them. Returns the summary."""
    kw.update(gop=gop or DEFAULT_GOP, workers=default_workers(workers, ray), ray=ray)
    if len(input) > 1 or os.path.isdir(input[0]):
        return compress_many(input, output, skip_existing=skip_existing, quiet=quiet, **kw)
    return compress_one(input[0], output, quiet, **kw)


def decompress_inputs(input, output, skip_existing: bool = False, format: str = "mkv",
                      max_pixels: int | None = None, workers: int = 0, ray: str | None = None, quiet: bool = False,
                      **kw) -> dict:
    """``vtok decompress``: one ``.vtok`` (or ``-``) to one video, or several files and folders into the folder
    ``output`` as ``.{format}``; the other arguments as ``decompress_file`` takes them. Returns the summary."""
    kw.update(max_pixels=max_pixels or DEFAULT_MAX_PIXELS, workers=default_workers(workers, ray), ray=ray)
    if len(input) > 1 or os.path.isdir(input[0]):
        return decompress_many(input, output, suffix="." + format, skip_existing=skip_existing, quiet=quiet, **kw)
    return decompress_one(input[0], output, quiet, **kw)
