"""The codec: one object that turns frames into ``.vtok`` bytes and back, the one way in for in-memory work.

Data flow (encoder): frames (one GOP at a time) → tokens (``VideoTokenizer``, ``codec/models/tokenizer.py``) → each
bit's probability (``IntegerPrior``, ``codec/prior.py``) → range-coded payload in coding order (``codec/entropy.py``) →
one unit per GOP, with the audio of its time span after it (``bitstream/container.py``, ``bitstream/audio.py``).
The decoder runs the same steps backwards; memory stays that of one GOP whatever the clip's length, and a GOP's
frames pass in pieces (``encode_gop``, ``decode_gop_pieces``), so not even a GOP's frames are held at once.
``codec/files.py`` wraps this for video files.

>>> import numpy as np, torch
>>> from vtok.codec.prior import PriorConfig, TokenPrior
>>> from vtok.codec.models.tokenizer import TokenizerConfig, VideoTokenizer
>>> tok = VideoTokenizer(TokenizerConfig(stem_ch=8, ch=16, bits=10, group_bits=5)).eval()
>>> codec = Codec(tok, TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze())
>>> video = np.zeros((5, 16, 24, 3), np.uint8)
>>> data = codec.compress(video, fps=25)
>>> codec.decompress(data).shape
(5, 16, 24, 3)
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from vtok.bitstream.audio import pack_packets, pack_streams
from vtok.bitstream.errors import VtokError
from vtok.bitstream.container import UNKNOWN_FRAMES, ContainerWriter, Header
from vtok.codec.coded import (DEFAULT_MAX_PIXELS, CodedFile, Slot, at_file_size, check_frame_area, concealed,
                              pieces_of)
from vtok.codec.entropy import PERFECT, decode_tokens, encode_tokens
from vtok.codec.ladder import coded_size, rate_ladder
from vtok.codec.prior import IntegerPrior, TokenPrior
from vtok.codec.search import Search, searched_tokens
from vtok.codec.models.shapes import token_shape
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import BUNDLED_MODELS, EARLIER_IDS, build_tokenizer
from vtok.codec.media.info import Colour, VideoError
from vtok.codec.media.read import resize_frames
from vtok.codec.parallel import gop_jobs, run_jobs

# Frames per GOP (one independently decodable unit): 1 + 4·16, about 2.2 s at 30 fps; each GOP restarts the causal
# model with an intra latent frame, so longer GOPs cost fewer bits and seeking decodes more (docs/MODELS.md).
DEFAULT_GOP = 65


class ModelMismatch(VtokError, ValueError):
    """A ``.vtok`` file was made by other weights than the ones loaded."""


@dataclass
class Codec:
    """A tokenizer and its token prior, as one coding model. ``family_id`` names the bits it codes.

    ``compress(frames) -> bytes`` / ``decompress(bytes) -> frames`` in memory; ``compress_to`` / ``decompress_from``
    stream GOP by GOP to and from a binary file object. Frames are uint8 ``(T, H, W, 3)``.
    """

    tokenizer: VideoTokenizer
    prior: IntegerPrior
    # The tokenizer with the prior its sign bits grew up with (``load_codec``): their rates code as that family's files
    base: "Codec | None" = None

    @functools.cached_property
    def family_id(self) -> str:
        """The token family, written into every file (the header's model id): a hash of what decides the bits and
        their probabilities, the tokenizer's family (encoder, quantizer) and the prior. The decoder is not part of
        it: a better decoder for the same bits decodes the family's files. Computed once per loaded codec."""
        tokens = self.tokenizer.family_of(self.model_bits)
        return hashlib.sha256((tokens + self.prior.model_id).encode()).hexdigest()[:16]

    @property
    def model_bits(self) -> int:
        """Bits of the tokens it codes: the prior's (the sign bits with a base family's prior, ``family_of``)."""
        return self.prior.cfg.bits

    def codes(self, model_id: str) -> bool:
        """Whether a file whose header names ``model_id`` is of this codec's family (ids of earlier releases,
        which hashed the decoder as well, included)."""
        return EARLIER_IDS.get(model_id, model_id) == self.family_id

    def coder_of(self, model_id: str) -> "Codec":
        """The codec for a file of family ``model_id``: ``base`` for its family's files, else this one."""
        return self.base if self.base and not self.codes(model_id) and self.base.codes(model_id) else self

    @property
    def rate_ladder(self) -> list:
        """The tokenizer's rate ladder (``codec/ladder.py``) up to the bits this codec codes."""
        return [p for p in rate_ladder(self.tokenizer) if p.bits <= self.model_bits]

    def chosen_rate(self, rate: int | None, bits: int | None) -> int | None:
        """``rate``, or when neither it nor ``bits`` is given the model's default rate (``default_rate``)."""
        if rate is None and bits is None and "default_rate" in self.tokenizer.meta:
            return min(int(self.tokenizer.meta["default_rate"]), len(self.rate_ladder) - 1)
        return rate

    def settings(self, rate: int | None = None, bits: int | None = None) -> tuple[float, int]:
        """(scale, bits per token) of a ``--rate`` point or of ``bits`` at full size (neither: the model's default
        rate, weights metadata ``default_rate``, else all bits)."""
        if rate is not None and bits is not None:
            raise ValueError("give `rate` or `bits`, not both")
        rate = self.chosen_rate(rate, bits)
        if rate is not None:
            ladder = self.rate_ladder
            if not 0 <= rate < len(ladder):
                raise ValueError(f"`rate` must be in 0..{len(ladder) - 1} for this model, got {rate}")
            return ladder[rate].scale, ladder[rate].bits
        bits = bits or self.model_bits
        if not 1 <= bits <= self.model_bits:
            raise ValueError(f"`bits` must be in 1..{self.model_bits}, got {bits}")
        return 1.0, bits

    def hold(self, hold: float | None = None) -> float:
        """The encoder's temporal hold: ``hold``, or for None the model's own (``VideoTokenizer.own_hold``)."""
        return self.tokenizer.own_hold(hold)

    def compress_to(self, f: BinaryIO, gops: Iterable[np.ndarray], width: int, height: int, fps: Fraction,
                    rate: int | None = None, bits: int | None = None, gop: int = DEFAULT_GOP,
                    colour: Colour | None = None, audio=None, audio_end: float | None = None,
                    progress=None, workers: int = 1, ray: str | None = None, hold: float | None = None,
                    search: Search | None = None) -> dict:
        """Code ``gops`` (uint8 ``(n, height, width, 3)`` arrays of ``gop`` frames, the last may be shorter; or each
        GOP an iterable of such arrays, its pieces, which the encoder then takes as they come) into ``f``;
        ``audio``: a ``media.audio.AudioSource`` to carry along (packets after ``audio_end`` seconds are left out);
        ``workers`` > 1 codes GOPs in that many processes, ``ray`` on a Ray cluster (the same bytes);
        ``hold``: the encoder's temporal hold (``Codec.hold``; None: the model's own); ``search``: the encoder's
        search (``Search.of(preset, tune)``; None: the one-pass encoder).
        Returns frames, bytes (all, video, audio), cross-entropy bits and raw token bits."""
        if gop < 1 or (gop - 1) % 4:
            raise ValueError(f"GOP length must be 1 + 4k frames (1, 5, 9, 13, 17, ...), got {gop}")
        rate = self.chosen_rate(rate, bits)
        scale, bits = self.settings(rate, bits)
        if self.base is not None and bits <= self.base.model_bits:
            return self.base.compress_to(f, gops, width, height, fps, rate, None if rate is not None else bits, gop,
                                         colour, audio, audio_end, progress, workers, ray, hold, search)
        hold = self.hold(hold)
        header = self._header(width, height, fps, rate, bits, coded_size(width, height, scale), gop, colour)
        start = f.tell()
        writer = ContainerWriter(f, header)
        pending = []
        if audio is not None:
            writer.write_audio_streams(pack_streams(audio.streams, audio.description))
            pending = sorted(audio.packets, key=audio.seconds)
            if audio_end is not None:
                pending = [p for p in pending if audio.seconds(p) < audio_end]
        frames, ce_total, raw = 0, 0.0, 0

        jobs = gop_jobs(gops, (height, width), (header.coded_width, header.coded_height), bits, hold,
                         search or Search(), whole=workers > 1 or ray is not None)
        for gi, (n_frames, payload, ce, n_bits) in enumerate(self._map(Codec.encode_gop, jobs, workers, ray)):
            writer.write_unit(gi, frames, n_frames, payload)
            frames += n_frames
            ce_total += ce
            raw += n_bits
            # the audio of this GOP's time span follows it
            n = sum(1 for p in pending if audio.seconds(p) < frames / fps) if pending else 0
            if n:
                writer.write_audio(pack_packets(pending[:n]))
                pending = pending[n:]
            if progress is not None:
                progress(frames, (f.tell() - start - writer.audio_bytes) * 8 / (frames * width * height))
        if frames == 0:
            raise VideoError("no frames to code")
        if pending:  # what is left after the last frame
            writer.write_audio(pack_packets(pending))
        writer.close()
        size = f.tell() - start
        return {"frames": frames, "bytes": size, "video_bytes": size - writer.audio_bytes,
                "audio_bytes": writer.audio_bytes,
                "cross_entropy_bits": ce_total, "raw_token_bits": raw}

    def _header(self, width: int, height: int, fps: Fraction, rate: int | None, bits: int, coded: tuple[int, int],
                gop: int, colour: Colour | None) -> Header:
        """The header of a file this codec writes (its frame count patched when the file is closed)."""
        c = colour or Colour()
        header = Header(width=width, height=height, frames=UNKNOWN_FRAMES, fps_num=fps.numerator,
                        fps_den=fps.denominator, bits_per_token=bits, model_bits=self.model_bits, gop=gop,
                        prob_bits=self.prior.cfg.prob_bits, perfect=PERFECT, model_id=self.family_id,
                        rate=rate if rate is not None else 255, coded_width=coded[0], coded_height=coded[1],
                        matrix=c.matrix, full_range=c.full_range, primaries=c.primaries, transfer=c.transfer)
        header.validate()
        return header

    def encode_gop(self, clip, coded: tuple[int, int], bits: int, hold: float = 0.0,
                   search: Search = Search()) -> tuple[int, bytes, float, int]:
        """One GOP's frames (a uint8 array, or an iterable of them, its pieces, taken as they come) → (frames, unit
        payload, cross-entropy bits, raw token bits), at the ``coded`` size; ``search``: the encoder's search
        (``codec/search.py``; a searching preset holds the GOP's frames, the one-pass encoder a piece of them)."""
        count = 0

        def sized(pieces):
            nonlocal count
            for piece in pieces:
                count += len(piece)
                yield piece if coded == (piece.shape[2], piece.shape[1]) else resize_frames(piece, coded)

        pieces = sized([clip] if isinstance(clip, np.ndarray) else clip)
        if search.steps:
            tokens = searched_tokens(self.tokenizer, self.float_prior, list(pieces), bits, hold, search)
        else:
            tokens = self.tokenizer.encode_pieces(pieces, bits, hold)
        payload, ce = encode_tokens(self.prior, tokens, bits)
        return count, payload, ce, tokens.size * bits

    @functools.cached_property
    def float_prior(self):
        """The float form of the integer prior (``TokenPrior.from_integer``), for the encoder's search."""
        return TokenPrior.from_integer(self.prior).eval()

    def decode_gop(self, payload: bytes, frames: int, header: Header) -> np.ndarray:
        """One GOP unit's payload → its uint8 frames at the file's size, in one array."""
        tokens, size = self.gop_tokens(payload, frames, header)
        return at_file_size(self.tokenizer.decode(tokens, header.bits_per_token, size), header)

    def decode_gop_pieces(self, payload: bytes, frames: int, header: Header) -> Iterator[np.ndarray]:
        """``decode_gop``'s frames a piece at a time as the decoder streams them (``VideoTokenizer.decode_pieces``),
        so that a whole GOP of frames is never held at once."""
        tokens, size = self.gop_tokens(payload, frames, header)
        for video in self.tokenizer.decode_pieces(tokens, header.bits_per_token, size):
            yield at_file_size(video, header)

    def gop_tokens(self, payload: bytes, frames: int, h: Header) -> tuple[np.ndarray, tuple[int, int, int]]:
        """One GOP unit's payload → (its tokens, the size ``(frames, H, W)`` they are coded at)."""
        tokens = decode_tokens(self.prior, payload, token_shape(frames, h.coded_height, h.coded_width),
                               h.bits_per_token)
        return tokens, (frames, h.coded_height, h.coded_width)

    def _map(self, method, jobs: Iterable[tuple], workers: int, ray: str | None = None) -> Iterator:
        """``method(self, *job)`` for every job, in order: here, or in ``workers`` processes or Ray actors that each
        build this codec once (``codec.parallel``)."""
        if workers <= 1 and ray is None:
            for job in jobs:
                yield method(self, *job)
            return
        state = (self.tokenizer.cfg, {k: v.cpu() for k, v in self.tokenizer.state_dict().items()},
                 self.tokenizer.meta, self.prior.on("cpu"), str(self.tokenizer._device()), self.tokenizer.precision)
        yield from run_jobs(Codec.from_state, state, method.__name__, jobs, workers, ray)

    @staticmethod
    def from_state(state) -> "Codec":
        """A codec from ``(tokenizer config, weights, metadata, integer prior, device, decoder precision)``, as a
        worker builds its own (on the device the caller's codec runs on, decoding as it does)."""
        cfg, weights, meta, prior, device, precision = state
        tok = build_tokenizer(cfg, weights, meta).eval().to(device)
        tok.precision = precision
        return Codec(tok, prior.on(device))

    def open(self, f: BinaryIO) -> "CodedFile":
        """Read a ``.vtok`` stream's header and unit index; raises ModelMismatch if another model made it."""
        return self.check(CodedFile(f))

    def check(self, coded: "CodedFile", max_pixels: int = DEFAULT_MAX_PIXELS) -> "CodedFile":
        """Raise ModelMismatch unless this model made ``coded``, FrameTooLarge if its frames exceed ``max_pixels``."""
        h = coded.header
        check_frame_area(h, max_pixels)
        if (coder := self.coder_of(h.model_id)) is not self:
            return coder.check(coded, max_pixels)
        if not self.codes(h.model_id):
            bundled = ", ".join(BUNDLED_MODELS)
            raise ModelMismatch(f"the file was made by token family {h.model_id}, which the loaded model "
                                f"({self.family_id}) does not code and no bundled model ({bundled}) codes: pass "
                                f"`model=PATH` (and `prior=PATH`) with weights of family {h.model_id}")
        if h.model_bits != self.model_bits:
            raise ModelMismatch(f"the file has {h.model_bits}-bit tokens but the model makes {self.model_bits}")
        return coded

    def decompress_from(self, coded: CodedFile, start: int = 0, frames: int | None = None, audio: bool = True,
                        workers: int = 1, ray: str | None = None, on_damage=None) -> Iterator[tuple[np.ndarray, list]]:
        """Decode frames ``start .. start + frames``: yields (uint8 frames, audio packets) in order, a GOP's audio
        (the packets of its span, timestamps shifted so the range starts at 0) with its last frames. Only the GOPs
        that hold the range are decoded; here (not in ``workers`` processes or on Ray) each GOP comes in the
        decoder's pieces, so memory holds one piece of frames, not a GOP's.

        A GOP lost from a damaged file (``CodedFile(strict=False)``), or one whose payload does not decode, is
        concealed: its frames repeat the last frame decoded before it (mid-grey before any), so the frame count and
        the audio stay in step; ``on_damage(first, end, reason)`` is told of each GOP concealed because it did not
        decode (the lost ones are ``coded.problems()``)."""
        if (coder := self.coder_of(coded.header.model_id)) is not self:
            yield from coder.decompress_from(coded, start, frames, audio, workers, ray, on_damage)
            return
        if not coded.frames:
            raise VideoError("the file holds no intact frames")
        end = coded.frames if frames is None else min(coded.frames, start + frames)
        if start < 0 or (frames is not None and frames < 1):
            raise ValueError("`start` must be >= 0 and `frames` >= 1")
        if start >= coded.frames:
            raise ValueError(f"`start={start}` is past the last frame ({coded.frames} frames)")
        h = coded.header
        rate = Fraction(h.fps_num, h.fps_den)
        t_lo = start / rate if start > 0 else -float("inf")
        t_hi = end / rate if end < coded.frames else float("inf")
        results = self._decoded(coded, (s for s in coded.slots(start, end) if s.unit is not None), workers, ray)
        last = np.full((h.height, h.width, 3), 128, np.uint8)  # what a concealed frame shows
        for s in coded.slots(start, end):
            lo, hi = max(start, s.first_frame) - s.first_frame, min(end, s.first_frame + s.frames) - s.first_frame
            pieces = pieces_of(next(results), s, coded, on_damage) if s.unit is not None else iter(())
            held, at = None, 0  # the last piece is held back to go out with the GOP's audio
            for video in concealed(pieces, hi, lambda: last):
                piece = video[max(lo - at, 0):max(hi - at, 0)]
                at += len(video)
                if len(piece):
                    if held is not None:
                        yield held, []
                    held = piece
                    last = piece[-1]
                if at >= hi:
                    break
            packets = coded.audio_of(s, start, t_lo, t_hi) if audio else []
            yield (held if held is not None else np.zeros((0, h.height, h.width, 3), np.uint8)), packets

    def _decoded(self, coded: CodedFile, slots: Iterable[Slot], workers: int, ray: str | None) -> Iterator:
        """Per slot with a unit, in order: its frames as an iterator of pieces, or the error that stopped its
        decoding (a strict file raises it)."""
        jobs = ((coded.reader.read_payload(s.unit), s.unit.frames, coded.header) for s in slots)
        if workers <= 1 and ray is None:
            return (self.decode_gop_pieces(*job) for job in jobs)
        method = Codec.decode_gop if coded.strict else Codec.decode_gop_or_error
        return (r if isinstance(r, VtokError) else iter([r]) for r in self._map(method, jobs, workers, ray))

    def decode_gop_or_error(self, payload: bytes, frames: int, header: Header) -> np.ndarray | VtokError:
        """``decode_gop``, or the typed error that stopped it (so that a worker's damaged GOP is concealed, not
        the end of the run)."""
        try:
            return self.decode_gop(payload, frames, header)
        except VtokError as e:
            return e

    def compress(self, frames: np.ndarray, fps=30, rate: int | None = None, bits: int | None = None,
                 gop: int = DEFAULT_GOP, hold: float | None = None, search: Search | None = None) -> bytes:
        """uint8 ``(T, H, W, 3)`` → the bytes of a ``.vtok`` file (``hold``, ``search``: as ``compress_to``)."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
            raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.shape} {frames.dtype}")
        buf = io.BytesIO()
        rate_q = fps if isinstance(fps, Fraction) else Fraction(str(fps)).limit_denominator(1001)
        self.compress_to(buf, (frames[i:i + gop] for i in range(0, len(frames), gop)), frames.shape[2],
                         frames.shape[1], rate_q, rate, bits, gop, hold=hold, search=search)
        return buf.getvalue()

    def decompress(self, data: bytes, start: int = 0, frames: int | None = None) -> np.ndarray:
        """The bytes of a ``.vtok`` file → uint8 ``(T, H, W, 3)`` (frames ``start .. start + frames``)."""
        coded = self.open(io.BytesIO(data))
        return np.concatenate([v for v, _ in self.decompress_from(coded, start, frames, audio=False)])

