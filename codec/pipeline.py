"""File-level flows of the codec, in data-flow order.

* ``compress_file``: frames are read (``codec.video_io``) one GOP at a time → tokenized (``VideoTokenizer``) →
  their bits' probabilities computed (``IntegerPrior``) → range-coded (``bitstream.rangecoder``) → framed as one
  unit per GOP (``bitstream.container``). ``decompress_file`` runs the same steps backwards; memory stays that of
  one GOP whatever the clip's length.
* ``tokenize_file`` / ``detokenize_file``: video file ⇄ tokens (``.npz`` export for language-model use).

The ``.npz`` holds: ``tokens`` (int32 or int64 ``(T', H', W')``), ``sub_tokens`` (``(T', H', W', G)``, the index
split into ``group_bits``-bit sub-tokens, least significant first), ``size`` (``T, H, W`` of the video),
``fps`` (numerator, denominator), ``bits``, ``group_bits`` and ``model_id``.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from bitstream.audio import NO_TS, pack_packets, pack_streams, unpack_packets, unpack_streams
from bitstream.container import (UNKNOWN_FRAMES, ContainerReader, ContainerWriter, Header, pack_gop_payload,
                                 unpack_gop_payload)
from bitstream.rangecoder import BitDecoder, BitEncoder
from codec.prior import IntegerPrior, anchor_mask, bits_to_tokens, steps_for, tokens_to_bits
from codec.tokenizer import BUNDLED_MODELS, DEFAULT_WEIGHTS, VideoTokenizer, load_tokenizer, model_path, token_shape
from codec.video_io import (Colour, VideoError, VideoWriter, iter_frames, probe, read_audio, read_video,
                            resize_frames, write_video)

DEFAULT_PRIOR = DEFAULT_WEIGHTS.with_name("vtok-default-prior.safetensors")
DEFAULT_GOP = 17
AUDIO_UNIT_OVERHEAD = 19  # unit header (15 bytes) and CRC (4 bytes) around an audio payload
PERFECT = False  # constriction model construction; recorded in every header


class TokenFileError(ValueError):
    """A token file is unreadable or does not match the model; the message says what to do."""


def _check_output(path: Path) -> None:
    if not path.parent.exists():
        raise FileNotFoundError(f"output folder {path.parent} does not exist")


def tokenize_file(src, out, model=None, bits: int | None = None, max_frames: int | None = None,
                  resize: tuple[int, int] | None = None, size=None, fps=None, log=print) -> dict:
    """Tokenize a video file into ``out`` (.npz). Returns a summary dict."""
    out = Path(out)
    _check_output(out)
    tok = load_tokenizer(model)
    info = probe(src, size, fps)
    video = read_video(src, max_frames=max_frames, resize=resize, size=size, fps=fps)
    tokens = tok.encode(video, bits=bits)
    bits = bits or tok.bits
    group = getattr(tok.quantizer, "group_bits", bits)
    groups = -(-bits // group)
    sub = np.stack([(tokens >> (group * g)) & ((1 << group) - 1) for g in range(groups)], axis=-1)
    dtype = np.int32 if bits <= 31 else np.int64
    tmp = out.with_name(f".{out.name}.part")
    with open(tmp, "wb") as f:
        np.savez(f, tokens=tokens.astype(dtype), sub_tokens=sub.astype(dtype),
                 size=np.array(video.shape[:3], np.int64),
                 fps=np.array([info.fps.numerator, info.fps.denominator], np.int64),
                 bits=np.int64(bits), group_bits=np.int64(group), model_id=np.str_(tok.model_id))
    tmp.replace(out)
    summary = {"frames": int(video.shape[0]), "height": int(video.shape[1]), "width": int(video.shape[2]),
               "tokens": list(tokens.shape), "bits": bits, "model_id": tok.model_id}
    log(f"{src}: {video.shape[0]} frames {video.shape[2]}x{video.shape[1]} -> tokens {tuple(tokens.shape)} "
        f"x {bits} bits -> {out}")
    return summary


def load_token_file(path) -> dict:
    """Read a token ``.npz`` written by ``tokenize_file``; raises TokenFileError when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise TokenFileError(f"{path}: not a vtok token file ({e})") from None
    need = {"tokens", "size", "fps", "bits", "model_id"}
    if not need <= set(data):
        raise TokenFileError(f"{path}: not a vtok token file (missing {', '.join(sorted(need - set(data)))})")
    return data


def detokenize_file(src, out, model=None, log=print) -> dict:
    """Decode a token ``.npz`` back to a video file (``.mkv``/``.mp4``/``.y4m``/PNG folder)."""
    out = Path(out)
    _check_output(out)
    data = load_token_file(src)
    tok = load_tokenizer(model)
    want = str(data["model_id"])
    if want != tok.model_id:
        raise TokenFileError(f"{src} was made by model {want}, but the loaded model is {tok.model_id}: "
                             f"pass --model with the weights of model {want}")
    t, h, w = (int(v) for v in data["size"])
    video = tok.decode(data["tokens"].astype(np.int64), bits=int(data["bits"]), size=(t, h, w))
    num, den = (int(v) for v in data["fps"])
    write_video(out, video, Fraction(num, den))
    log(f"{src}: tokens {tuple(data['tokens'].shape)} -> {t} frames {w}x{h} -> {out}")
    return {"frames": t, "height": h, "width": w}




# --- the codec ---------------------------------------------------------------------------------------------------

class ModelMismatch(ValueError):
    """A ``.vtok`` file was made by other weights than the ones loaded."""


@dataclass
class Codec:
    """A tokenizer and its token prior, as one coding model. ``model_id`` hashes both."""

    tokenizer: VideoTokenizer
    prior: IntegerPrior

    @functools.cached_property
    def model_id(self) -> str:  # hashes every weight: computed once per loaded codec
        return hashlib.sha256((self.tokenizer.model_id + self.prior.model_id).encode()).hexdigest()[:16]


def load_codec(model=None, prior=None, device: str = "cpu") -> Codec:
    """Tokenizer weights (a path or a bundled model's name; default: the bundled default) and prior weights
    (default: the file beside them, ``*-prior``)."""
    tok = load_tokenizer(model, device=device)
    if prior is None:
        base = model_path(model)
        prior = base.with_name(base.stem + "-prior.safetensors")
    if not Path(prior).is_file():
        raise FileNotFoundError(f"no token prior at {prior} (pass --prior)")
    ip = IntegerPrior.load(prior).to(device)
    if ip.cfg.bits != tok.bits:
        raise ValueError(f"prior {prior} codes {ip.cfg.bits}-bit tokens but the tokenizer makes {tok.bits}-bit tokens")
    return Codec(tok, ip)


def bundled_codec(model_id: str) -> Codec | None:
    """The bundled model whose codec id is ``model_id`` (files made by an earlier default model), or None."""
    for name in BUNDLED_MODELS:
        if name != "default" and model_path(name).is_file():
            codec = load_codec(name)
            if codec.model_id == model_id:
                return codec
    return None


# --- the rate ladder ---------------------------------------------------------------------------------------------

LADDER_SCALES = (0.25, 0.375, 0.5)  # coded-size scales below the bit ladder, each with full tokens


@dataclass(frozen=True)
class RatePoint:
    """One point of the rate ladder: code the clip at ``scale`` × its size with the first ``bits`` bits per token."""

    scale: float
    bits: int


def rate_ladder(tok: VideoTokenizer) -> list[RatePoint]:
    """``vtok compress --rate N`` picks ``rate_ladder(tok)[N]``; rate 0 is the smallest file.

    Resolution scaling first (``LADDER_SCALES`` × the frame size, every bit of the token; the decoder resizes back),
    then the tokenizer's bit ladder at full size without its smallest point (at the same rate the half-size picture
    is 1.6 dB better in PSNR; docs/RATE.md). For 18-bit tokens: 9 points, 1/4, 3/8, 1/2 size, then 3, 4, 6, 9, 12, 18
    bits. A model trained without nested dropout has its full token and the three scales.
    """
    bits = tok.rate_ladder
    return [RatePoint(s, tok.bits) for s in LADDER_SCALES] + [RatePoint(1.0, k) for k in bits[1:] or bits]


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size a clip of ``width`` × ``height`` is coded at for ``scale``: even sides, at least 8, at most the frame."""
    if scale >= 1:
        return width, height

    def side(n):
        return min(n, max(8, round(n * scale / 2) * 2))

    return side(width), side(height)


def _walk_gop(prior: IntegerPrior, shape: tuple[int, int, int], bits: int, code_step) -> np.ndarray:
    """Visit one GOP's coding steps in coding order (docs/BITSTREAM.md) and return its bit planes.

    ``code_step(t, start, end, positions, p1)`` codes (encoder) or decodes (decoder) the bits of one step and returns
    them as uint8 ``(end - start, n_positions)``; everything else — context, order, probabilities — is shared, so
    encoder and decoder mirror each other by construction.
    """
    d = prior.cfg.bits
    t_, h, w = shape
    anchor = anchor_mask(h, w)
    planes = np.zeros((t_, bits, h, w), np.uint8)
    prev = np.zeros((d, h, w), np.int8)
    for t in range(t_):
        cur = np.zeros((d, h, w), np.int8)
        for step in steps_for(bits, prior.cfg.group_bits):
            p, _, s, e = step
            pos = anchor if p == 0 else ~anchor
            b = code_step(t, s, e, pos, prior.step_probabilities(prev, cur, t > 0, step))
            planes[t, s:e][:, pos] = b
            cur[s:e][:, pos] = b.astype(np.int8) * 2 - 1
        prev = cur
    return planes


def encode_tokens(prior: IntegerPrior, tokens: np.ndarray, bits: int) -> tuple[bytes, float]:
    """Range-code one GOP's tokens ``(T', H', W')`` (first ``bits`` bits of each). Returns (payload, CE bits)."""
    enc = BitEncoder(prior.cfg.prob_bits, PERFECT)
    source = tokens_to_bits(tokens, bits)  # (T', k, H, W)
    one = 1 << prior.cfg.prob_bits
    ce = [0.0]

    def code(t, s, e, pos, p1):
        b = source[t, s:e][:, pos]
        enc.encode(b.ravel(), p1)
        ce[0] -= float(np.log2(np.where(b.ravel() == 1, p1, one - p1) / one).sum())
        return b

    _walk_gop(prior, tokens.shape, bits, code)
    return pack_gop_payload(ce[0], enc.finish()), ce[0]


def decode_tokens(prior: IntegerPrior, payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    """Inverse of ``encode_tokens``: payload → int64 tokens of ``shape`` ``(T', H', W')``."""
    _, words = unpack_gop_payload(payload)
    dec = BitDecoder(words, prior.cfg.prob_bits, PERFECT)
    planes = _walk_gop(prior, shape, bits, lambda t, s, e, pos, p1: dec.decode(p1).reshape(e - s, -1))
    return bits_to_tokens(planes)


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


def _gops(frames_iter, gop: int):
    buf = []
    for fr in frames_iter:
        buf.append(fr)
        if len(buf) == gop:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def compress_file(src, out, model=None, prior=None, gop: int = DEFAULT_GOP, bits: int | None = None,
                  size=None, fps=None, max_frames: int | None = None, quiet: bool = False, rate: int | None = None,
                  audio: bool = True, log=print) -> dict:
    """Compress a video file to ``.vtok``. Returns a summary (frames, bytes, bpp, cross-entropy bits, fps).

    ``rate`` picks a point of ``rate_ladder`` (0 = smallest file); ``bits`` sets the bits per token directly at full
    size. Give at most one of them; neither codes the full tokens at full size. The input's audio streams are carried
    as they are (``audio=False`` drops them); bpp counts the video's bytes only.
    """
    out = Path(out)
    _check_output(out)
    if gop < 1 or (gop - 1) % 4:
        raise ValueError(f"GOP length must be 1 + 4k frames (1, 5, 9, 13, 17, ...), got {gop}")
    codec = load_codec(model, prior)
    tok = codec.tokenizer
    if rate is not None and bits is not None:
        raise ValueError("give --rate or --bits, not both")
    ladder = rate_ladder(tok)
    scale = 1.0
    if rate is not None:
        if not 0 <= rate < len(ladder):
            raise ValueError(f"rate must be in 0..{len(ladder) - 1} for this model, got {rate}")
        scale, bits = ladder[rate].scale, ladder[rate].bits
    bits = bits or tok.bits
    if not 1 <= bits <= tok.bits:
        raise ValueError(f"bits must be in 1..{tok.bits}, got {bits}")
    info = probe(src, size, fps)
    if info.bit_depth > 8:
        log(f"note: {src} is {info.bit_depth}-bit video; vtok codes 8-bit RGB, so it was converted to 8 bits")
    if info.variable_rate:
        log(f"note: {src} has a variable frame rate; coded at a constant {info.fps} fps (its frame timestamps are "
            f"not kept)")
    sound = read_audio(src) if audio else None
    cw, ch = coded_size(info.width, info.height, scale)
    c = info.colour
    header = Header(width=info.width, height=info.height, frames=UNKNOWN_FRAMES, fps_num=info.fps.numerator,
                    fps_den=info.fps.denominator, bits_per_token=bits, model_bits=tok.bits, gop=gop,
                    prob_bits=codec.prior.cfg.prob_bits, perfect=PERFECT, model_id=codec.model_id,
                    rate=rate if rate is not None else 255, coded_width=cw, coded_height=ch, matrix=c.matrix,
                    full_range=c.full_range, primaries=c.primaries, transfer=c.transfer)
    header.validate()
    tmp = out.with_name(f".{out.name}.part")
    frames = 0
    ce_total = 0.0
    t0 = time.perf_counter()
    bar = _Progress(max_frames or info.frames, quiet, "compress")
    try:
        with open(tmp, "wb") as f:
            writer = ContainerWriter(f, header)
            pending = []
            audio_bytes = 0
            if sound is not None:
                streams = pack_streams(sound.streams, sound.description)
                writer.write_audio_streams(streams)
                audio_bytes = len(streams) + AUDIO_UNIT_OVERHEAD
                pending = sorted(sound.packets, key=sound.seconds)
            for gi, clip in enumerate(_gops(iter_frames(src, max_frames=max_frames, size=size, fps=fps), gop)):
                if clip.shape[1:3] != (info.height, info.width):
                    raise VideoError(f"{src}: frame size changes mid-stream ({clip.shape[2]}x{clip.shape[1]})")
                if (cw, ch) != (info.width, info.height):
                    clip = resize_frames(clip, (cw, ch))
                tokens = tok.encode(clip, bits=bits)
                payload, ce = encode_tokens(codec.prior, tokens, bits)
                writer.write_unit(gi, frames, len(clip), payload)
                frames += len(clip)
                ce_total += ce
                # the audio of this GOP's time span follows it (all that is left after the last GOP)
                last = max_frames is not None and frames >= max_frames
                n = sum(1 for p in pending if sound.seconds(p) < frames / info.fps) if pending else 0
                if n and not last:
                    audio_bytes += _write_audio(writer, pending[:n])
                    pending = pending[n:]
                bar.update(frames, f.tell() * 8 / (frames * info.width * info.height))
            if frames == 0:
                raise VideoError(f"{src}: no frames decoded")
            if pending:
                end = frames / info.fps if max_frames is not None else float("inf")  # --frames: cut the audio too
                audio_bytes += _write_audio(writer, [p for p in pending if sound.seconds(p) < end])
            writer.close()
            nbytes = f.tell()
        tmp.replace(out)
    finally:
        bar.close()
        if tmp.exists():
            tmp.unlink()
    dt = time.perf_counter() - t0
    pixels = frames * info.width * info.height
    video_bytes = nbytes - audio_bytes
    summary = {"frames": frames, "width": info.width, "height": info.height, "bytes": nbytes,
               "video_bytes": video_bytes, "audio_bytes": audio_bytes, "bpp": video_bytes * 8 / pixels,
               "cross_entropy_bits": ce_total, "raw_token_bits": _raw_bits(frames, cw, ch, gop, bits),
               "fps": frames / dt, "model_id": codec.model_id}
    sound_note = f" (+ {audio_bytes} bytes of audio)" if audio_bytes else ""
    log(f"{src} -> {out}: {frames} frames {info.width}x{info.height}, {video_bytes} bytes{sound_note}, "
        f"{summary['bpp']:.4f} bpp, {summary['fps']:.1f} fps")
    return summary


def _write_audio(writer: ContainerWriter, packets) -> int:
    """One audio unit after the GOP unit written last; returns its size in the file (header, payload, CRC)."""
    if not packets:
        return 0
    payload = pack_packets(packets)
    writer.write_audio(payload)
    return len(payload) + AUDIO_UNIT_OVERHEAD


def _raw_bits(frames: int, width: int, height: int, gop: int, bits: int) -> int:
    total = 0
    for first in range(0, frames, gop):
        t_, h_, w_ = token_shape(min(gop, frames - first), height, width)
        total += t_ * h_ * w_ * bits
    return total


def read_vtok_header(f) -> tuple[ContainerReader, list]:
    """Open a ``.vtok`` stream and walk its unit headers (validates the framing and the end unit)."""
    reader = ContainerReader(f)
    units = list(reader.units())
    return reader, units


def decompress_file(src, out, model=None, prior=None, start: int = 0, frames: int | None = None,
                    quiet: bool = False, audio: bool = True, log=print) -> dict:
    """Decode ``.vtok`` to a video file; ``start``/``frames`` pick a range and only its GOPs are decoded.

    The file's audio goes into ``.mkv`` / ``.mp4`` outputs, cut to the same time span (``audio=False``: left out).
    """
    out = Path(out)
    _check_output(out)
    if start < 0 or (frames is not None and frames < 1):
        raise ValueError("--start must be >= 0 and --frames >= 1")
    with open(src, "rb") as f:
        reader, units = read_vtok_header(f)
        h = reader.header
        codec = load_codec(model, prior)
        if h.model_id != codec.model_id and model is None and prior is None:
            codec = bundled_codec(h.model_id) or codec
        if h.model_id != codec.model_id:
            raise ModelMismatch(f"{src} was made by model {h.model_id}, but the loaded model is {codec.model_id}: "
                                f"pass --model/--prior with the weights of model {h.model_id}")
        if h.model_bits != codec.tokenizer.bits:
            raise ModelMismatch(f"{src} has {h.model_bits}-bit tokens but the model makes {codec.tokenizer.bits}")
        end = h.frames if frames is None else min(h.frames, start + frames)
        if start >= h.frames:
            raise ValueError(f"--start {start} is past the last frame ({h.frames} frames)")
        t0 = time.perf_counter()
        written = 0
        rate = Fraction(h.fps_num, h.fps_den)
        streams = None
        if reader.audio_units and audio:
            streams, description = unpack_streams(reader.read_payload(reader.audio_units[0]))
        colour = Colour(h.matrix, h.full_range, h.primaries, h.transfer)
        bar = _Progress(end - start, quiet, "decompress")
        with VideoWriter(out, h.width, h.height, rate, colour,
                         (streams, description) if streams and out.suffix.lower() in (".mkv", ".mp4", ".mov")
                         else None) as w:
            if streams and not w.holds_audio:
                log(f"note: {out} holds no audio: the file's {len(streams)} audio stream(s) are not written "
                    f"(decode to .mkv or .mp4 to keep them)")
            for codec_name in w.transcoded:
                log(f"note: {out.suffix} cannot hold {codec_name} audio: transcoded to AAC")
            t_lo = start / rate if start > 0 else -float("inf")
            t_hi = end / rate if end < h.frames else float("inf")
            for u in units:
                if u.first_frame + u.frames <= start or u.first_frame >= end:
                    continue
                payload = reader.read_payload(u)
                shape = token_shape(u.frames, h.coded_height, h.coded_width)
                tokens = decode_tokens(codec.prior, payload, shape, h.bits_per_token)
                video = codec.tokenizer.decode(tokens, bits=h.bits_per_token,
                                               size=(u.frames, h.coded_height, h.coded_width))
                if (h.coded_width, h.coded_height) != (h.width, h.height):
                    video = resize_frames(video, (h.width, h.height))
                lo, hi = max(start, u.first_frame) - u.first_frame, min(end, u.first_frame + u.frames) - u.first_frame
                w.write(video[lo:hi])
                written += hi - lo
                bar.update(written)
                if streams and w.holds_audio:
                    tbs = [st.time_base for st in streams]
                    for au in reader.audio_units[1:]:
                        if au.gop_index == u.gop_index:
                            packets = unpack_packets(reader.read_payload(au), len(streams))
                            keep = [p for p in packets if t_lo <= _seconds(p, tbs) < t_hi]
                            w.write_audio(keep, tbs, shift=float(start / rate))
        bar.close()
    dt = time.perf_counter() - t0
    log(f"{src} -> {out}: {written} frames {h.width}x{h.height}, {written / dt:.1f} fps")
    return {"frames": written, "width": h.width, "height": h.height, "fps": written / dt}


def _seconds(p, time_bases) -> float:
    num, den = time_bases[p.stream]
    return (p.pts if p.pts != NO_TS else p.dts) * num / den


def vtok_info(src) -> dict:
    """Header fields and per-GOP sizes of a ``.vtok`` file (no model needed)."""
    import os

    with open(src, "rb") as f:
        reader, units = read_vtok_header(f)
        h = reader.header
        payload_bits = 0
        ce = 0.0
        gops = []
        for u in units:
            unit_ce, words = unpack_gop_payload(reader.read_payload(u))
            payload_bits += len(words) * 8
            ce += unit_ce
            gops.append({"index": u.gop_index, "first_frame": u.first_frame, "frames": u.frames,
                         "bytes": u.payload_size})
        audio = []
        audio_bytes = sum(u.payload_size + AUDIO_UNIT_OVERHEAD for u in reader.audio_units)
        if reader.audio_units:
            streams, _ = unpack_streams(reader.read_payload(reader.audio_units[0]))
            sizes = [0] * len(streams)
            for au in reader.audio_units[1:]:
                for p in unpack_packets(reader.read_payload(au), len(streams)):
                    sizes[p.stream] += len(p.data)
            audio = [{"codec": st.codec, "sample_rate": st.sample_rate, "channels": st.channels,
                      "packet_bytes": n} for st, n in zip(streams, sizes)]
    size = os.path.getsize(src)
    video_bytes = size - audio_bytes
    return {"width": h.width, "height": h.height, "coded_width": h.coded_width, "coded_height": h.coded_height,
            "frames": h.frames, "fps": f"{h.fps_num}/{h.fps_den}",
            "bits_per_token": h.bits_per_token, "model_bits": h.model_bits, "gop": h.gop,
            "coder": h.coder.name, "perfect": h.perfect, "prob_bits": h.prob_bits, "rate": h.rate,
            "pixel_format": h.pixel_format.name, "model_id": h.model_id, "format_version": h.version,
            "colour": {"matrix": h.matrix, "full_range": h.full_range, "primaries": h.primaries,
                       "transfer": h.transfer},
            "file_bytes": size, "video_bytes": video_bytes, "audio_bytes": audio_bytes, "audio_streams": audio,
            "payload_bits": payload_bits, "cross_entropy_bits": ce,
            "bpp": video_bytes * 8 / (h.frames * h.width * h.height), "gop_units": gops}


__all__ = ["Codec", "ModelMismatch", "RatePoint", "TokenFileError", "VideoError", "compress_file", "decompress_file",
           "detokenize_file", "load_codec", "load_token_file", "rate_ladder", "tokenize_file", "vtok_info"]
