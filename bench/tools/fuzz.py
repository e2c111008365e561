"""In-process fuzzing of ``.vtok`` parsing and decoding, driven by Hypothesis (property-based testing).

The target takes any bytes and runs what a stranger's file reaches: the header and unit parser, ``vtok info``'s
reader, the audio units, and ``Codec.decompress`` with a tiny bundled test model (``tests/data/fuzz/``), both strict
and tolerant of damage (``CodedFile(strict=False)``: every intact GOP decoded, lost ones concealed, and the frames out
must be the header's count, up to ``MAX_FRAMES`` of them). Inputs are
seed files (``tests/data/fuzz/*.vtok``: video only, several GOPs, with audio, a bit prefix, a reduced coded size)
mutated by Hypothesis — byte flips, overwrites of 32-bit fields with edge values, insertions, deletions, truncation —
and, for most cases, resealed (``bitstream.container.reseal``) so that the mutation gets past the checksums to the
code behind them.

A case fails when it raises anything but a ``VtokError`` (the typed errors every bad file must end in), runs past the
per-case time limit, or raises the process's peak memory by more than the allocation bound. ``vtok bench fuzz
--cases N`` runs N cases and prints what it found; ``tests/test_fuzz.py`` runs a short one.
"""

from __future__ import annotations

import io
import resource
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from vtok.bitstream.container import reseal
from vtok.bitstream.errors import VtokError
from vtok.bitstream.info import stream_info
from vtok.codec.coded import CodedFile
from vtok.codec.loading import load_codec

SEEDS = Path(__file__).resolve().parents[2] / "tests" / "data" / "fuzz"
MAX_PIXELS = 256 * 256  # the decode limit inside the target: seeds are at most 64×48
MAX_FRAMES = 200  # frames the tolerant decode is asked for: a mutated header may claim 2³¹ of them
EDGE_VALUES = (0, 1, 2, 3, 4, 5, 9, 16, 17, 255, 256, 16383, 16384, 16385, 65535, 65536, 0x7FFFFFFF, 0xFFFFFFFE,
               0xFFFFFFFF)


class CaseTimeout(Exception):
    """A case ran past the per-case time limit (not a VtokError: it counts as a failure)."""


class FrameCountMismatch(Exception):
    """The tolerant decoder gave another number of frames than the header's (a failure)."""


@dataclass
class FuzzReport:
    cases: int = 0
    rejected: int = 0  # ended in a VtokError (the expected way for a bad file)
    decoded: int = 0  # decoded to frames without an error
    failures: list = field(default_factory=list)  # (kind, message, input bytes)
    seconds: float = 0.0

    def summary(self) -> str:
        kinds = {}
        for kind, *_ in self.failures:
            kinds[kind] = kinds.get(kind, 0) + 1
        found = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
        return (f"{self.cases} cases in {self.seconds:.0f} s ({self.cases / max(self.seconds, 1e-9):.0f}/s): "
                f"{self.rejected} rejected with a typed error, {self.decoded} decoded, failures: {found}")


def load_seeds(folder=SEEDS) -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted(Path(folder).glob("*.vtok"))]
    if not seeds:
        raise FileNotFoundError(f"no seed files (*.vtok) in {folder}")
    return seeds


def fuzz_codec(folder=SEEDS):
    """The tiny test model the seeds were made with."""
    return load_codec(Path(folder) / "tiny.safetensors")


def mutate(seed: bytes, ops: list, resealed: bool) -> bytes:
    """Apply ``ops`` — ``(kind, position in [0, 1), value)`` — to ``seed``; then reseal the checksums if asked."""
    b = bytearray(seed)
    for kind, pos, value in ops:
        i = min(int(pos * (len(b) + 1)), len(b))
        if kind == "flip" and i < len(b):
            b[i] ^= 1 << (value % 8)
        elif kind == "byte" and i < len(b):
            b[i] = value % 256
        elif kind == "u32" and i + 4 <= len(b):
            b[i:i + 4] = EDGE_VALUES[value % len(EDGE_VALUES)].to_bytes(4, "little")
        elif kind == "insert":
            b[i:i] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "delete":
            del b[i:i + 1 + value % 7]
        elif kind == "truncate":
            del b[i:]
    return reseal(bytes(b)) if resealed else bytes(b)


def run_case(data: bytes, codec, seconds: float = 10.0) -> str:
    """Feed ``data`` to every reader; returns ``"decoded"`` or ``"rejected"``, raises on a failure."""

    def alarm(*_):
        raise CaseTimeout(f"case ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            stream_info(io.BytesIO(data), len(data))
        except VtokError:
            pass
        try:
            coded = codec.check(CodedFile(io.BytesIO(data), strict=False), MAX_PIXELS)
            want = min(coded.frames, MAX_FRAMES)
            got = sum(len(v) for v, _ in codec.decompress_from(coded, 0, want, on_damage=lambda *a: None))
            if got != want:
                raise FrameCountMismatch(f"the tolerant decoder gave {got} frames, not {want}")
        except VtokError:
            pass
        try:
            coded = codec.check(CodedFile(io.BytesIO(data)), MAX_PIXELS)
            for _ in codec.decompress_from(coded):
                pass
        except VtokError:
            return "rejected"
        return "decoded"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz(cases: int, folder=SEEDS, seconds: float = 10.0, memory_mib: float = 1024.0, seed: int | None = None,
         log=print) -> FuzzReport:
    """Run ``cases`` Hypothesis-generated mutants of the seed files through ``run_case``."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings, strategies as st
    except ImportError:
        raise RuntimeError("fuzzing needs Hypothesis: pip install 'vtok[fuzz]'") from None
    seeds, codec = load_seeds(folder), fuzz_codec(folder)
    for s in seeds:  # every seed is a valid file for the model: the mutants start from decodable input
        if run_case(s, codec, seconds) != "decoded":
            raise ValueError("a seed file does not decode with the fuzz model: regenerate the seeds")
    report = FuzzReport()
    peak = {"base": _peak_mib()}
    op = st.tuples(st.sampled_from(["flip", "byte", "u32", "insert", "delete", "truncate"]),
                   st.floats(0, 1, exclude_max=True), st.integers(0, 255))
    t0 = time.time()

    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=seed is not None)
    @given(st.integers(0, len(seeds) - 1), st.lists(op, min_size=1, max_size=6),
           st.sampled_from([True, True, True, False]))
    def one(index, ops, resealed):
        data = mutate(seeds[index], ops, resealed)
        report.cases += 1
        try:
            outcome = run_case(data, codec, seconds)
            setattr(report, outcome, getattr(report, outcome) + 1)
        except CaseTimeout as e:
            report.failures.append(("hang", str(e), data))
        except Exception as e:  # noqa: BLE001 - anything but a VtokError is what fuzzing looks for
            where = traceback.extract_tb(e.__traceback__)[-1]
            report.failures.append((f"{type(e).__name__}", f"{e} ({Path(where.filename).name}:{where.lineno})", data))
        if _peak_mib() - peak["base"] > memory_mib:
            report.failures.append(("memory", f"peak memory rose by {_peak_mib() - peak['base']:.0f} MiB", data))
            peak["base"] = _peak_mib()  # one report per rise
        if report.cases % 1000 == 0:
            report.seconds = time.time() - t0
            log(report.summary())

    one()
    report.seconds = time.time() - t0
    return report


def make_seeds(folder=SEEDS) -> list[Path]:
    """Write the tiny fuzz model, its prior and the seed files (regenerate after a format or model change)."""
    import subprocess

    import imageio_ffmpeg
    import numpy as np
    import torch

    from vtok.codec.files import compress_file
    from vtok.codec.prior import PriorConfig, TokenPrior
    from vtok.codec.models.config import TokenizerConfig
    from vtok.codec.models.tokenizer import VideoTokenizer
    from vtok.codec.models.zoo import save_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(TokenizerConfig(stem_ch=8, ch=16, bits=10, group_bits=5)).eval(),
                   folder / "tiny.safetensors")
    TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze().save(folder / "tiny-prior.safetensors")
    codec = fuzz_codec(folder)
    rng = np.random.default_rng(0)
    frames = np.clip(rng.normal(128, 40, (1, 48, 64, 3)) + np.arange(13)[:, None, None, None] * 3, 0, 255)
    frames = frames.astype(np.uint8)
    out = []
    for name, kw in (("one-gop", dict(gop=17)), ("three-gops", dict(gop=5)), ("bits4", dict(gop=9, bits=4)),
                     ("quarter-size", dict(gop=9, rate=0))):
        path = folder / f"{name}.vtok"
        path.write_bytes(codec.compress(frames, fps=25, **kw))
        out.append(path)
    clip = folder / "audio-src.mkv"  # a short clip with an Opus track, made by FFmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t",
                    "0.4", "-c:v", "ffv1", "-c:a", "libopus", "-b:a", "16k", str(clip)], check=True)
    try:
        compress_file(clip, folder / "audio.vtok", codec=codec, gop=5, log=lambda *a: None)
    finally:
        clip.unlink()
    out.append(folder / "audio.vtok")
    return out


def run_fuzz(cases: int = 10000, seconds: float = 10.0, out=None, log=print) -> FuzzReport:
    """``vtok bench fuzz``: run, print the summary and each distinct failure; write failing inputs to ``out``."""
    report = fuzz(cases, seconds=seconds, log=log)
    log(report.summary())
    seen = set()
    for i, (kind, msg, data) in enumerate(report.failures):
        if (kind, msg) not in seen:
            seen.add((kind, msg))
            log(f"  {kind}: {msg}")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / f"failure-{i}.vtok").write_bytes(data)
    if report.failures:
        raise RuntimeError(f"fuzzing found {len(report.failures)} failures (listed above)")
    return report
