"""The video tokenizer: a causal encoder, a quantizer, and a decoder (bundled models, saving and loading: ``zoo.py``).

After MAGVIT-v2 (arXiv 2310.05737): ``1 + 4k`` frames map to ``1 + k`` latent frames at 1/8 of the resolution, so
the first frame is tokenized on its own and an image is a one-frame video. Two bodies share this interface:
``arch="tae"`` (``codec/models/tae.py``, starts from the pretrained TAEF2; the default model) and ``arch="magvit"``
(``codec/models/magvit.py``, trained from scratch; the ``magvit18`` model).

Rate ladder: with nested dropout (Rippel et al., arXiv 1402.0915) during training, only the first ``k`` bits of every
token are kept (the rest set to 0, "unknown", between the code values -1 and +1), so the decoder learns to work from
any prefix of the bits. ``encode(video, bits=k)`` / ``decode(tokens, bits=k)`` use that at inference.

Layouts: ``(B, C, T, H, W)`` float in ``[-1, 1]`` inside; uint8 ``(T, H, W, 3)`` video and integer ``(T', H', W')``
tokens at the public edges (``encode`` / ``decode``).
"""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

from vtok.codec.models.config import TokenizerConfig, default_group_bits
from vtok.codec.models.ids import weights_hash
from vtok.codec.models.precision import autocast, for_precision, run_pieces
from vtok.codec.models.streaming import FRAME_PIXELS, Stream, as_bytes, as_frames, stream_latents, to_uint8
from vtok.codec.models.quantizers import QUANTIZERS, build_quantizer
from vtok.codec.models.shapes import SPATIAL_STRIDE, TEMPORAL_STRIDE, pad_video

# Config fields that shape the decoder only: changing them keeps the token family.
DECODER_FIELDS = ("dec_blocks", "dec_enhance")


class VideoTokenizer(nn.Module):
    """Encoder + quantizer + decoder.

    Args: cfg (TokenizerConfig).
    ``forward(x)`` (training): ``x (B, 3, 1+4k, H, W)`` in [-1, 1] with H, W multiples of 8 →
    ``(reconstruction like x, QuantizerOutput)``.
    ``encode(video, bits=None)`` / ``decode(tokens, bits=None, size=None)``: uint8 ``(T, H, W, 3)`` ⇄ int64
    ``(T', H', W')``, a round trip:

    >>> tok = VideoTokenizer(TokenizerConfig(stem_ch=16, ch=16, bits=10, group_bits=5)).eval()
    >>> video = np.zeros((5, 16, 24, 3), np.uint8)
    >>> tokens = tok.encode(video)
    >>> tokens.shape
    (2, 2, 3)
    >>> tok.decode(tokens, size=video.shape[:3]).shape
    (5, 16, 24, 3)
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        qargs = dict(cfg.quantizer_args)
        qargs.setdefault("bits", cfg.bits)
        if getattr(QUANTIZERS.get(cfg.quantizer), "sized_groups", False):
            qargs.setdefault("group_bits", cfg.group_bits or default_group_bits(cfg.bits))
        self.quantizer = build_quantizer(cfg.quantizer, **qargs)
        if cfg.nested_dropout > 0 and not self.quantizer.nested:
            raise ValueError(f"nested dropout needs a quantizer whose index bits are ordered (lfq), not "
                             f"{cfg.quantizer!r}: set nested_dropout to 0")
        if cfg.dec_blocks and cfg.arch != "tae":
            raise ValueError(f"dec_blocks applies to arch 'tae' only, not {cfg.arch!r}")
        if cfg.arch == "magvit" and self.refine_bits:
            raise ValueError("refinement bits (rlfq) need arch 'tae'")
        if cfg.arch == "magvit":
            from vtok.codec.models.magvit import Decoder, Encoder
            self.encoder = Encoder(cfg, self.quantizer.dim)
            self.decoder = Decoder(cfg, self.quantizer.code_dim)
        elif cfg.arch == "tae":
            from vtok.codec.models.tae import TaeVideoDecoder, TaeVideoEncoder
            self.encoder = TaeVideoEncoder(self.quantizer.dim, cfg.stem_blocks)
            self.decoder = TaeVideoDecoder(self.quantizer.code_dim, cfg.dec_blocks, self.refine_bits, bool(cfg.dec_enhance))
        else:
            raise ValueError(f"unknown tokenizer architecture {cfg.arch!r} (magvit, tae)")
        self.stored_family = None  # a decode-only model's family id, as its file states it (``drop_encoder``)
        self.meta: dict = {}  # the weights file's metadata (``zoo.build_tokenizer``): e.g. its rate ladder and hold
        self.precision = "fp32"  # the decoder's arithmetic in ``decode`` (``precision.resolved``: fp32 or bf16)

    def drop_encoder(self, family_id: str) -> None:
        """Make this a decode-only model of token family ``family_id``: it decodes the family's tokens and files,
        and refuses to encode (an earlier family kept for its files needs no encoder; ``save_tokenizer(...,
        decode_only=True)``)."""
        self.encoder = None
        self.stored_family = family_id

    @property
    def decode_only(self) -> bool:
        return self.encoder is None

    def _encoder(self):
        if self.encoder is None:
            raise ValueError(f"this model of token family {self.family_id} decodes only (its weights hold no "
                             f"encoder): encode with another model")
        return self.encoder

    @property
    def bits(self) -> int:
        return self.quantizer.bits_per_token

    @property
    def refine_bits(self) -> int:
        """Refinement bits after the sign bits (``quantizers/rlfq.py``); 0 for other quantizers."""
        return getattr(self.quantizer, "refine_bits", 0)

    @property
    def base_bits(self) -> int:
        """The bits of the token before any refinement bits: a prefix this long is the base tokenizer's token."""
        return self.bits - self.refine_bits

    @property
    def group_bits(self) -> int:
        """Bits per sub-token: the quantizer's group (LFQ), else the whole token."""
        return getattr(self.quantizer, "group_bits", self.bits)

    @property
    def model_id(self) -> str:
        """A hash of the architecture and every weight (16 hex digits): these exact weights."""
        return weights_hash(self, self.cfg.to_json(), None)

    @property
    def family_id(self) -> str:
        """The token family: a hash of what decides the tokens (the config but its decoder-only fields, the encoder
        and quantizer weights). A tokenizer with another decoder for the same tokens has the same family."""
        if self.stored_family:
            return self.stored_family
        cfg = {k: v for k, v in json.loads(self.cfg.to_json()).items() if k not in DECODER_FIELDS}
        return weights_hash(self, json.dumps(cfg, sort_keys=True), False)

    def family_of(self, bits: int) -> str:
        """The token family of this tokenizer's first ``bits`` bits as a coded unit: its own for all of them; for
        the sign bits of a tokenizer with refinement bits, the family of the tokenizer they grew from (weights
        metadata ``base_family``), whose files it decodes."""
        if bits == self.bits:
            return self.family_id
        if bits == self.base_bits and "base_family" in self.meta:
            return self.meta["base_family"]
        raise ValueError(f"a {bits}-bit token prior does not fit this model's {self.bits}-bit tokens")

    @property
    def decoder_id(self) -> str:
        """A hash of the decoder alone (its config fields and weights): which decoder of the family this is."""
        # dec_enhance, added later, counts only when set, so that earlier decoders keep their ids
        cfg = {k: getattr(self.cfg, k) for k in DECODER_FIELDS if k != "dec_enhance" or self.cfg.dec_enhance}
        return weights_hash(self, json.dumps(cfg, sort_keys=True), True)

    def bit_mask(self, keep_bits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bit counts → a ``(B, D, 1, 1, 1)`` 0/1 mask keeping the first ``keep_bits`` channels."""
        ar = torch.arange(like.shape[1], device=like.device)
        return (ar[None, :] < keep_bits[:, None]).to(like.dtype)[:, :, None, None, None]

    def sample_keep_bits(self, batch: int, device=None) -> torch.Tensor | None:
        """Nested dropout's bits kept per sample ``(B,)`` for one training batch (None: all bits, no dropout).

        With refinement bits, half the shortened samples keep a prefix longer than the sign bits, the other half a
        shorter one, so that the rates of the base tokenizer stay trained while the new ones are learnt."""
        if not (self.training and self.cfg.nested_dropout > 0):
            return None
        drop = torch.rand(batch, device=device) < self.cfg.nested_dropout
        k = torch.randint(self.cfg.min_bits, self.bits, (batch,), device=device)
        if self.refine_bits:
            upper = torch.randint(self.base_bits, self.bits, (batch,), device=device)
            below = torch.randint(self.cfg.min_bits, self.base_bits, (batch,), device=device)
            k = torch.where(torch.rand(batch, device=device) < 0.5, upper, below)
        return torch.where(drop, k, torch.full_like(k, self.bits))

    def forward(self, x: torch.Tensor, keep_bits: torch.Tensor | None = None):
        z = self._encoder()(x)
        out = self.quantizer(z, x)
        codes = out.codes
        if keep_bits is None:
            keep_bits = self.sample_keep_bits(x.shape[0], x.device)
        if keep_bits is not None:
            codes = codes * self.bit_mask(keep_bits, codes)
        return self.decoder(codes), out

    def _check_bits(self, bits: int | None) -> int:
        if bits is None:
            return self.bits
        if not 1 <= bits <= self.bits:
            raise ValueError(f"bits must be in 1..{self.bits}, got {bits}")
        if bits < self.bits and (self.cfg.nested_dropout <= 0 or not self.quantizer.nested):
            raise ValueError(f"this model decodes whole {self.bits}-bit tokens only (it was not trained on bit "
                             f"prefixes), got bits={bits}")
        return bits

    def stream_chunk(self, h: int, w: int) -> int | None:
        """Frames per chunk when the body runs as a stream (``arch="tae"``; None: the whole clip at once): as many
        as keep a chunk near ``FRAME_PIXELS`` pixels (at least one), so memory stays that of one chunk at any clip
        length, and small frames still run in few, large chunks. Inside a chunk the body bounds its work by the same
        measure (``layers.in_strips``: a larger frame runs in strips of rows)."""
        if self.cfg.arch != "tae":
            return None
        return max(1, FRAME_PIXELS // (h * w))

    def own_hold(self, hold: float | None = None) -> float:
        """``hold`` checked (``check_hold``), or for None the model's own (weights metadata ``hold``, measured for
        it; 0 — no hold — for a model without one)."""
        if hold is None:
            hold = float(self.meta.get("hold", 0.0))
        return self.check_hold(hold)

    def check_hold(self, hold: float) -> float:
        """``hold`` if this tokenizer can encode with it (``encode``), else ValueError."""
        if not 0 <= hold < float("inf"):  # NaN too
            raise ValueError(f"hold must be a number >= 0, got {hold}")
        if hold and not self.quantizer.holds:
            raise ValueError(f"hold needs a tokenizer with sign-bit tokens (lfq), not {self.cfg.quantizer!r}")
        return float(hold)

    @torch.inference_mode()
    def encode(self, video, bits: int | None = None, hold: float = 0.0):
        """uint8 ``(T, H, W, 3)`` → int64 tokens ``(T', H', W')`` holding the first ``bits`` bits of each token.

        Takes numpy or a tensor, returns numpy (tensors stay inside the model). A streaming body (``stream_chunk``)
        runs chunk by chunk with its causal state carried along; it computes what it computes on the whole clip (to
        float rounding: a sign that sits at zero may rarely flip). ``hold`` > 0: a bit whose latent value is within
        ``±hold`` of zero keeps its previous latent frame's value (``held_indices``; sign-bit quantizers only), the
        clip's first latent frame being coded as it is — so a GOP coded alone holds from its own start.
        """
        bits = self._check_bits(bits)
        encoder = self._encoder()
        hold = self.check_hold(hold)
        t = len(video)
        n = self.stream_chunk(*np.shape(video)[1:3]) if t else None
        if n is None:
            # channels-last activations run the CPU convolutions faster (oneDNN's preferred layout)
            x = pad_video(as_frames(video).to(self._device())).contiguous(memory_format=torch.channels_last_3d)
            idx = self._indices([encoder(x)], hold)
        else:  # checked; a view of the caller's frames
            idx = self._indices(stream_latents(encoder, [as_bytes(video).cpu().numpy()], n, self._device()), hold)
        if bits < self.bits:
            idx = idx & ((1 << bits) - 1)
        return idx.cpu().numpy()

    def encode_pieces(self, pieces, bits: int | None = None, hold: float = 0.0) -> np.ndarray:
        """``encode`` of a clip given as pieces: uint8 arrays ``(n, H, W, 3)`` of one frame size, in order (any
        iterable, e.g. frames as they are read). A streaming body takes them chunk by chunk, so the clip's frames are
        never held together; another body gets them joined. The tokens are ``encode``'s of the joined clip."""
        bits, hold = self._check_bits(bits), self.check_hold(hold)
        with torch.inference_mode():
            idx = self._indices(self.latents(pieces), hold)
        if bits < self.bits:
            idx = idx & ((1 << bits) - 1)
        return idx.cpu().numpy()

    def latents(self, pieces):
        """The encoder's continuous latent of a clip given as pieces (as ``encode_pieces`` takes them), before the
        quantizer: chunks ``(1, D, t', H', W')`` in order (one chunk for a body that does not stream)."""
        pieces = iter(pieces)
        first = next(pieces, None)
        if first is None:
            raise ValueError("expected frames (T, H, W, 3), got none")
        first = as_bytes(first).cpu().numpy()
        n, encoder = self.stream_chunk(*first.shape[1:3]), self._encoder()
        if n is None:
            video = np.concatenate([first, *map(np.asarray, pieces)])
            yield encoder(pad_video(as_frames(video).to(self._device())).contiguous(
                memory_format=torch.channels_last_3d))
            return
        yield from stream_latents(encoder, self._checked_pieces(first, pieces), n, self._device())

    def _indices(self, latents, hold: float) -> torch.Tensor:
        """Token indices ``(T', H', W')`` of the encoder's latent chunks, in order; the temporal hold's state (the
        codes of the latent frame before a chunk's first) is carried from chunk to chunk."""
        parts, last = [], None
        for z in latents:
            if hold:
                idx, last = self.quantizer.held_indices(z, last, hold)
            else:
                idx = self.quantizer(z).indices
            parts.append(idx[0])
        return torch.cat(parts, 0)

    @staticmethod
    def _checked_pieces(first: np.ndarray, rest):
        yield first
        for p in rest:
            p = as_bytes(p).cpu().numpy()
            if p.shape[1:] != first.shape[1:]:
                raise ValueError(f"frame size changes mid-clip ({p.shape[2]}x{p.shape[1]}, was "
                                 f"{first.shape[2]}x{first.shape[1]})")
            yield p

    @torch.inference_mode()
    def decode(self, tokens, bits: int | None = None, size: tuple[int, int, int] | None = None):
        """int ``(T', H', W')`` tokens → uint8 video ``(T, H, W, 3)``; ``size`` = ``(T, H, W)`` crops the padding.

        The frames of ``decode_pieces``, gathered into one array.
        """
        out, done = None, 0
        n = len(tokens)
        for x in self.decode_pieces(tokens, bits, size):
            if out is None:
                limit = 1 + TEMPORAL_STRIDE * max(n - 1, 0)
                out = np.empty((min(limit, size[0]) if size else limit, *x.shape[1:]), np.uint8)
            out[done:done + len(x)] = x
            done += len(x)
        if out is None:  # no latent frames: an empty video of the size asked for
            h, w = (SPATIAL_STRIDE * d for d in np.shape(tokens)[1:])
            out = np.empty((0, min(size[1], h) if size else h, min(size[2], w) if size else w, 3), np.uint8)
        return out[:done]

    @torch.inference_mode()
    def decode_pieces(self, tokens, bits: int | None = None, size: tuple[int, int, int] | None = None):
        """``decode``'s frames as they come: uint8 arrays ``(n, H, W, 3)``, in order, cropped by ``size``.

        A streaming body decodes chunks of latent frames (``stream_chunk``'s pixels, four frames per latent frame)
        and turns each piece of frames it yields into uint8 at once, so float frames never pile up and a caller that
        writes each piece out holds no more than one piece of a GOP's frames.
        """
        bits = self._check_bits(bits)
        idx = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, torch.Tensor) else tokens)
        if idx.ndim != 3:
            raise ValueError(f"expected tokens of shape (T', H', W'), got {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= 2 ** bits):
            raise ValueError(f"token values must be in [0, 2**{bits})")
        full = (idx.shape[1] * SPATIAL_STRIDE, idx.shape[2] * SPATIAL_STRIDE)
        n = self.stream_chunk(*full) if idx.shape[0] else None
        t, h, w = size if size is not None else (None, None, None)
        stream = None
        if n is not None:
            stream = Stream()
            n = max(1, n // TEMPORAL_STRIDE)  # latent frames per chunk
        hh, ww = min(h or full[0], full[0]), min(w or full[1], full[1])
        left = t if t is not None else float("inf")  # frames still wanted
        decoder = for_precision(self.decoder, self.precision)  # once a clip, not per chunk
        for a in range(0, idx.shape[0], n or max(1, idx.shape[0])):
            codes = self.quantizer.indices_to_codes(idx[a:a + (n or idx.shape[0])].to(self._device()).unsqueeze(0))
            if bits < self.bits:
                codes = codes * self.bit_mask(torch.tensor([bits], device=codes.device), codes)
            codes = codes.contiguous(memory_format=torch.channels_last_3d)
            if stream is None:
                with autocast(self.precision, codes.device):
                    pieces = [to_uint8(decoder(codes)[0, :, :, :hh, :ww].float())]
            else:  # uint8 pieces (n, 3, H, W)
                pieces = (x[:, :, :hh, :ww].permute(0, 2, 3, 1).cpu().numpy()
                          for x in run_pieces(self.precision, codes.device, decoder.pieces(codes, stream)))
            for x in pieces:
                x = x[:left] if left < len(x) else x
                if len(x):
                    left -= len(x)
                    yield x
                if left <= 0:
                    return

    def _device(self) -> torch.device:
        return next(self.parameters()).device
