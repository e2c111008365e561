"""The codecs the benchmark compares, as peers: vtok, x265 and VVC behind one small interface and one name table.

Each entry of ``CODECS`` builds a ``BenchCodec`` from its settings dataclass. A bench codec names its version, its
settings (for the results document), its operating points (each with the settings that define it, which key the
cache), and runs one point on a clip: ``run(clip, point) -> (decoded frames, coded bytes, timings)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from vtok.bench.peers.anchors import ANCHORS, build_anchor
from vtok.bitstream.errors import ToolError
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.loading import load_codec
from vtok.codec.search import DEFAULT_PRESET, PRESETS, Search


@dataclass
class VtokSettings:
    """model: a path or bundled name (None: the default); rates: rate-ladder points (None: all); gop; fps; hold: the
    encoder's temporal hold (None: the model's own; ``Codec.hold``); preset, tune: the encoder's search
    (``codec/search.py``; None: medium, perceptual)."""

    model: str | None = None
    rates: list | None = None
    gop: int = DEFAULT_GOP
    fps: float = 30.0
    device: str = "cpu"
    hold: float | None = None
    preset: str | None = None
    tune: str | None = None


@dataclass
class AnchorSettings:
    """qps: the QP ladder at full size; rungs: ``(qp, scale)`` points at a reduced size; preset; config;
    intra_period (None: one intra frame per clip)."""

    qps: list = field(default_factory=lambda: [22, 27, 32, 37, 42, 47])
    rungs: list = field(default_factory=list)
    preset: str = "medium"
    config: str = "low-delay"
    intra_period: int | None = None


class VtokBenchCodec:
    """vtok through its in-memory codec (the model loaded once); ``check_files`` runs one real file round trip.

    ``name``: ``"vtok"``, or ``"vtok:MODEL"`` for a named model (a bundled name or a path), either with ``@PRESET``
    for an encoder preset (``vtok:default@veryslow``), so that several vtok models and presets are peers in one bench
    and one can be the BD-rate anchor of the others.
    """

    def __init__(self, s: VtokSettings, name: str = "vtok"):
        self.s, self.name = s, name
        self.codec = load_codec(s.model, device=s.device)
        if self.codec.tokenizer.decode_only:  # before any clip is coded, and the picture comparison leaves it out
            raise ValueError(f"{name}: the model {s.model} decodes only (its weights hold no encoder): it cannot "
                             f"be benched")
        self.hold = self.codec.hold(s.hold)
        self.search = Search.of(s.preset, s.tune)
        self.preset, self.tune = s.preset or DEFAULT_PRESET, self.search.tune
        self.ladder = self.codec.rate_ladder
        self.rates = list(range(len(self.ladder))) if s.rates is None else list(s.rates)
        bad = [r for r in self.rates if not 0 <= r < len(self.ladder)]
        if bad:
            raise ValueError(f"vtok rates must be in 0..{len(self.ladder) - 1}, got {bad}")

    def version(self) -> str:
        return f"vtok family {self.codec.family_id}, decoder {self.codec.tokenizer.decoder_id}"

    def description(self) -> dict:
        return {"model": str(self.s.model or "bundled default"), "gop": self.s.gop, "hold": self.hold,
                "preset": self.preset, "tune": self.tune, "rate_ladder": [vars(p) for p in self.ladder]}

    def points(self) -> list[tuple]:
        return [(r, {"codec": self.name, "rate": r, "bits_per_token": self.ladder[r].bits,
                     "scale": self.ladder[r].scale, "gop": self.s.gop, "hold": self.hold,
                     **({"preset": self.preset, "tune": self.tune} if self.search.steps else {})})
                for r in self.rates]

    def run(self, clip: np.ndarray, point) -> tuple[np.ndarray, int, dict]:
        import time

        t0 = time.perf_counter()
        data = self.codec.compress(clip, fps=self.s.fps, rate=point, gop=self.s.gop, hold=self.hold,
                                   search=self.search)
        t1 = time.perf_counter()
        dec = self.codec.decompress(data)
        t2 = time.perf_counter()
        return dec, len(data), {"encode_s": t1 - t0, "decode_s": t2 - t1}

    def check_files(self, clip: np.ndarray) -> None:
        """The file flows (``vtok compress`` / ``decompress`` through real files) give the in-memory sizes and
        frames (the bytes differ only in the source's colour tags, which a file carries in its header)."""
        import tempfile
        from pathlib import Path

        from vtok.codec.files import compress_file, decompress_file
        from vtok.codec.media.write import VideoWriter
        from vtok.codec.media.read import read_video

        rate = self.rates[-1]
        with tempfile.TemporaryDirectory() as d:
            src = Path(d) / "src.mkv"
            with VideoWriter(src, clip.shape[2], clip.shape[1], self.s.fps) as w:
                w.write(clip)
            compress_file(src, Path(d) / "c.vtok", rate=rate, gop=self.s.gop, codec=self.codec,
                          log=lambda *a: None, hold=self.hold, preset=self.preset, tune=self.tune)
            decompress_file(Path(d) / "c.vtok", Path(d) / "d.mkv", codec=self.codec, log=lambda *a: None)
            dec, nbytes, _ = self.run(clip, rate)
            if (Path(d) / "c.vtok").stat().st_size != nbytes or not np.array_equal(read_video(Path(d) / "d.mkv"), dec):
                raise ToolError("the file round trip differs from the in-memory one")


class AnchorBenchCodec:
    """An anchor encoder (``bench.anchors``) at its QPs, plus reduced-size rungs."""

    def __init__(self, name: str, s: AnchorSettings):
        self.name, self.s = name, s
        self.anchor = build_anchor(name, preset=s.preset, config=s.config, intra_period=s.intra_period)
        self._version = None

    def version(self) -> str:
        if self._version is None:
            self._version = self.anchor.version()
        return self._version

    def description(self) -> dict:
        return self.anchor.settings(qp=-1) | {"qp": list(self.s.qps), "ladder": [list(x) for x in self.s.rungs]}

    def points(self) -> list[tuple]:
        pts = [(qp, 1.0) for qp in self.s.qps] + [tuple(r) for r in self.s.rungs]
        return [(qp if scale == 1.0 else f"{qp}@{scale:g}", self.anchor.settings(qp, scale)) for qp, scale in pts]

    def run(self, clip: np.ndarray, point) -> tuple[np.ndarray, int, dict]:
        qp, _, scale = str(point).partition("@")
        return self.anchor.encode_decode(clip, int(qp), scale=float(scale) if scale else 1.0)


CODECS = {"vtok": lambda vtok, anchors: VtokBenchCodec(vtok),
          **{name: (lambda vtok, anchors, name=name: AnchorBenchCodec(name, anchors)) for name in ANCHORS}}


def is_codec(name: str) -> bool:
    """A name ``build_codec`` knows: a registered codec, or ``vtok:MODEL``, either with ``@PRESET``."""
    base, at, preset = name.partition("@")
    if at and (not base.startswith("vtok") or preset not in PRESETS):
        return False
    return base in CODECS or (base.startswith("vtok:") and len(base) > 5)


def build_codec(name: str, vtok: VtokSettings, anchors: AnchorSettings):
    """The bench codec registered under ``name``; ``vtok:MODEL`` is vtok with that model, ``…@PRESET`` with that
    encoder preset."""
    base, at, preset = name.partition("@")
    if at:
        vtok = replace(vtok, preset=preset)
    if base.startswith("vtok:") and len(base) > 5:
        return VtokBenchCodec(replace(vtok, model=base[5:]), name)
    if at:
        return VtokBenchCodec(vtok, name)
    try:
        return CODECS[name](vtok, anchors)
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}") from None
