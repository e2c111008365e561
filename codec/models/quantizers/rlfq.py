"""Residual lookup-free quantization: LFQ's sign bits, then refinement bits on what the signs leave.

The first ``base_bits`` bits of a token are LFQ's (``q1 = sign(z)``, one per latent channel; MAGVIT-v2, arXiv
2310.05737). Each refinement bit is the sign of one channel's residual, ``q2_c = sign(z_c − s_c · q1_c)``, with
``s_c`` the channel's mean ``|z_c|`` (so both halves of every sign split again near their middle): a second LFQ
stage on the residual, as residual quantization stacks stages (RQ-VAE, arXiv 2203.01941; BSQ-ViT doubles the bits
of each token the same way, arXiv 2406.07548). ``refine`` lists the channels that get one, most useful first, so
the token's bits stay nested prefixes: the first ``base_bits`` are the base tokenizer's token, and every longer
prefix adds one channel's refinement. Token index bit ``base_bits + j`` is channel ``refine[j]``'s refinement.

The encoder reads ``dim = base_bits`` channels; the decoder gets ``code_dim = bits`` (signs, then refinements).
"""

from __future__ import annotations

import torch

from vtok.codec.models.quantizers.base import QuantizerOutput
from vtok.codec.models.quantizers.lfq import LookupFreeQuantizer


class ResidualLookupFreeQuantizer(LookupFreeQuantizer):
    """LFQ plus one refinement bit for each channel in ``refine``.

    Args:
        bits: bits per token, ``base_bits + len(refine)`` (at most 62).
        base_bits: the sign bits (= the encoder's latent channels).
        refine: the channels that get a refinement bit, in bit order.
        scales: ``s_c`` of each of those channels (the split point of the residual).
        group_bits: bits per sub-token (the prior's bit groups); the last group may be shorter.
        Other arguments are LFQ's loss weights (unused when the encoder is frozen).
    """

    sized_groups = True

    def __init__(self, bits: int = 60, base_bits: int = 36, refine=(), scales=(), group_bits: int = 9,
                 entropy_weight: float = 0.0, gamma: float = 1.0, commit_weight: float = 0.0,
                 temperature: float = 1.0):
        refine, scales = [int(c) for c in refine], [float(s) for s in scales]
        if bits != base_bits + len(refine) or len(scales) != len(refine):
            raise ValueError(f"bits ({bits}) must be base_bits ({base_bits}) + one per refined channel "
                             f"({len(refine)} channels, {len(scales)} scales)")
        if len(set(refine)) != len(refine) or any(not 0 <= c < base_bits for c in refine):
            raise ValueError(f"refined channels must be distinct channels of 0..{base_bits - 1}, got {refine}")
        if any(not s > 0 for s in scales):
            raise ValueError(f"scales must be > 0, got {scales}")
        super().__init__(base_bits, base_bits if base_bits % group_bits else group_bits, entropy_weight, gamma,
                         commit_weight, temperature)
        self.dim = base_bits
        self.base_bits = base_bits
        self.bits = bits
        self.group_bits = group_bits
        self.refine_bits = len(refine)
        self.register_buffer("refine", torch.tensor(refine, dtype=torch.int64), persistent=False)
        self.register_buffer("scales", torch.tensor(scales).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("powers", 2 ** torch.arange(bits, dtype=torch.int64), persistent=False)

    @property
    def code_dim(self) -> int:
        return self.bits

    def _residual(self, z: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
        """``z − s·q1`` of the refined channels (channels at dim 1, any trailing dims)."""
        s = self.scales.view(1, -1, *[1] * (z.dim() - 2)).to(z.dtype)
        return z.index_select(1, self.refine) - s * q1.index_select(1, self.refine)

    def _refinements(self, z: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
        """``(B, base, T, H, W)`` latent and its signs → the refinement codes ``(B, len(refine), T, H, W)``, ±1,
        with a straight-through gradient to ``z`` (the encoder-side search, ``codec/search.py``, moves it)."""
        r = self._residual(z, q1.detach())
        return r + (torch.where(r > 0, 1.0, -1.0).to(z.dtype) - r).detach()

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        q1 = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        q = torch.cat([z + (q1 - z).detach(), self._refinements(z, q1)], 1)
        losses = {}
        if self.training and self.entropy_weight:
            losses["entropy"] = self.entropy_weight * self.entropy_loss(z)
        if self.training and self.commit_weight:
            losses["commit"] = self.commit_weight * (z - q1.detach()).pow(2).mean()
        return QuantizerOutput(q, self.codes_to_indices(q.detach()), losses)

    # True: the hold also keeps a refinement bit whose residual sits near zero (``held_indices``); off, since on the
    # default it saved about 1 % of the bits for 0.02-0.03 dB less (docs/MODELS.md, "Refinement bits")
    hold_refinements = False

    def held_indices(self, z: torch.Tensor, prev: torch.Tensor | None, hold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """LFQ's temporal hold on the sign bits, and the same rule for the refinement bits: one whose residual
        ``z − s·q1`` lies within ``±hold`` of zero keeps its previous latent frame's value when its channel's sign
        did not change (``hold_refinements``). ``prev``: the last latent frame's codes ``(B, bits, H, W)``, None at
        a GOP's first. Returns ``(indices, the last latent frame's codes)``."""
        q1 = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        q2 = torch.empty_like(z[:, :self.refine_bits])
        for t in range(q1.shape[2]):
            zt = z[:, :, t]
            if prev is not None:
                q1[:, :, t] = torch.where(zt.abs() < hold, prev[:, :self.base_bits], q1[:, :, t])
            r = self._residual(zt, q1[:, :, t])
            q2[:, :, t] = torch.where(r > 0, 1.0, -1.0).to(z.dtype)
            if prev is not None and self.hold_refinements:
                same = q1[:, :, t].index_select(1, self.refine) == prev[:, :self.base_bits].index_select(1, self.refine)
                q2[:, :, t] = torch.where((r.abs() < hold) & same, prev[:, self.base_bits:], q2[:, :, t])
            prev = torch.cat([q1[:, :, t], q2[:, :, t]], 1)
        return self.codes_to_indices(torch.cat([q1, q2], 1)), prev

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LFQ's entropy terms of the sign bits (the latent ``z`` has ``base_bits`` channels)."""
        saved, self.bits = self.bits, self.base_bits
        try:
            return super().entropy_terms(z)
        finally:
            self.bits = saved
