"""Lookup-Free Quantization (LFQ), from MAGVIT-v2 (arXiv 2310.05737).

Each latent channel is one bit: ``q = sign(z)`` and the token index is ``sum_i 2**i * [z_i > 0]`` — no codebook
lookup. Training adds the entropy penalty ``E[H(q(z))] - gamma * H(E[q(z)])`` and a commitment loss.

The per-sample term factorizes exactly over bits (the distance softmax over ``{-1, +1}**D`` is a product of per-bit
sigmoids), so it is a sum of binary entropies. The codebook term does not factorize; it is computed per sub-group of
``group_bits`` bits (``2**group_bits``-wide distributions, e.g. 512 for 9 bits), never over the full ``2**D`` codes.
"""

from __future__ import annotations

import torch

from vtok.codec.models.quantizers.base import Quantizer, QuantizerOutput


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log())


class LookupFreeQuantizer(Quantizer):
    """Lookup-free quantizer.

    Args:
        bits: bits per token (= latent channels ``D``).
        group_bits: bits per sub-token; the codebook-entropy term is computed per sub-group (``bits`` must be a
            multiple). Default 9, so 18 bits are two 9-bit sub-tokens.
        entropy_weight: weight of the entropy penalty. gamma: weight of the codebook-entropy term inside it.
        commit_weight: weight of ``||z - sg(q)||^2``. temperature: ``p(bit_i = 1) = sigmoid(4 z_i / temperature)``,
            the distance softmax between ``z_i`` and the two code values ``+-1``.
    Shapes: ``z (B, D, T, H, W)`` → codes like ``z`` (values ``+-1``), indices ``(B, T, H, W)`` int64.
    """

    def __init__(self, bits: int = 18, group_bits: int = 9, entropy_weight: float = 0.1, gamma: float = 1.0,
                 commit_weight: float = 0.25, temperature: float = 1.0):
        super().__init__()
        if not 1 <= bits <= 62:
            raise ValueError(f"LFQ bits must be in 1..62, got {bits}")
        if bits % group_bits:
            raise ValueError(f"bits ({bits}) must be a multiple of group_bits ({group_bits})")
        self.dim = bits
        self.bits = bits
        self.group_bits = group_bits
        self.entropy_weight = entropy_weight
        self.gamma = gamma
        self.commit_weight = commit_weight
        self.temperature = temperature
        self.register_buffer("powers", 2 ** torch.arange(bits, dtype=torch.int64), persistent=False)
        # Rows: every code of one sub-group as 0/1 bits (2**group_bits, group_bits).
        codes = (torch.arange(2 ** group_bits)[:, None] >> torch.arange(group_bits)) & 1
        self.register_buffer("group_codes", codes.float(), persistent=False)

    @property
    def bits_per_token(self) -> int:
        return self.bits

    nested = True  # bit i is channel i: any prefix of the bits is a coarser token (the rate ladder)
    sized_groups = True
    holds = True  # ``held_indices``: the encoder-side temporal hold (``VideoTokenizer.encode(hold=...)``)

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        codes = z + (q - z).detach()
        indices = self.codes_to_indices(q)
        losses = {}
        if self.training:
            losses["entropy"] = self.entropy_weight * self.entropy_loss(z)
            losses["commit"] = self.commit_weight * (z - q.detach()).pow(2).mean()
        return QuantizerOutput(codes, indices, losses)

    def held_indices(self, z: torch.Tensor, prev: torch.Tensor | None, hold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices with a temporal hold: a bit whose latent value lies within ``±hold`` of zero keeps the value it had
        in the latent frame before (``prev``: its ``±1`` codes ``(B, D, H, W)``, None at a GOP's first latent frame);
        every other bit is ``sign(z)``. A bit that sits near zero is one the encoder barely decides, and a flip from
        one latent frame to the next is what the token prior codes dearest, so holding it saves rate for little
        change in the picture (docs/MODELS.md, "Temporal hold"). ``hold = 0`` is the plain ``forward``.
        Returns ``(indices (B, T, H, W), the last latent frame's codes)`` to carry to the next call."""
        q = torch.where(z > 0, 1.0, -1.0).to(z.dtype)
        for t in range(q.shape[2]):
            if prev is not None:
                q[:, :, t] = torch.where(z[:, :, t].abs() < hold, prev, q[:, :, t])
            prev = q[:, :, t]
        return self.codes_to_indices(q), prev

    def codes_to_indices(self, q: torch.Tensor) -> torch.Tensor:
        bits = (q > 0).to(torch.int64)  # (B, D, T, H, W)
        return (bits * self.powers.view(1, -1, 1, 1, 1)).sum(1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        bits = (indices.to(torch.int64).unsqueeze(1) >> torch.arange(self.bits, device=indices.device).view(1, -1, 1, 1, 1)) & 1
        return bits.float() * 2 - 1

    def entropy_terms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean per-sample entropy, codebook entropy summed over sub-groups), both in nats."""
        logits = 4.0 * z.float() / self.temperature
        p = torch.sigmoid(logits).movedim(1, -1).reshape(-1, self.bits)  # (N, D): P(bit = 1)
        per_sample = _binary_entropy(p).sum(-1).mean()
        logp1 = torch.nn.functional.logsigmoid(logits).movedim(1, -1).reshape(-1, self.bits)
        logp0 = torch.nn.functional.logsigmoid(-logits).movedim(1, -1).reshape(-1, self.bits)
        codebook = z.new_zeros((), dtype=torch.float32)
        g = self.group_bits
        for s in range(0, self.bits, g):
            # log P(code) for every code of this sub-group: (N, 2**g)
            logp = logp1[:, s:s + g] @ self.group_codes.T + logp0[:, s:s + g] @ (1 - self.group_codes).T
            avg = logp.exp().mean(0)
            codebook = codebook - (avg * avg.clamp_min(1e-12).log()).sum()
        return per_sample, codebook

    def entropy_loss(self, z: torch.Tensor) -> torch.Tensor:
        per_sample, codebook = self.entropy_terms(z)
        return per_sample - self.gamma * codebook
