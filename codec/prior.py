"""The token prior: P(bit = 1) for every bit of every token, with bit-exact integer inference.

Context model in the spirit of checkerboard context modelling (He et al., "Checkerboard Context Model for Efficient
Learned Image Compression", arXiv 2103.15306) applied to binary token planes, with temporal context from the previous
latent frame as in conditional video coding (Li et al., DCVC, arXiv 2109.15047), and the bit-group ("sub-token")
split of MAGVIT-v2's LFQ tokens (arXiv 2310.05737).

Coding order inside one latent frame (``codec.entropy.frame_steps``, shared with coding): two checkerboard passes
(anchors ``(y + x) % 2 == 0`` first), and inside each pass the bit groups in order (e.g. bits 0-8, then 9-17). Each
of these *steps* is one evaluation of a small CNN that sees: the previous latent frame's bits, the bits of the current frame known so far (``+1/-1``, ``0`` unknown), and
which step it is. It works on the bits of any token index, so every quantizer's tokens can be coded by it.

Bit-exactness (the decoder must rebuild the encoder's probabilities exactly, whatever the machine): this module is
the float form that trains, quantization-aware, on the constants of the integer form (``codec/integer_prior.py``),
and ``TokenPrior.freeze()`` turns it into that ``IntegerPrior``, which coding runs.

Layouts: bits ``(D, H, W)`` uint8 planes per latent frame inside; token indices ``(T', H', W')`` at the edges.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch import nn

from vtok.codec.entropy import frame_steps
from vtok.codec.integer_prior import (ACT_FRAC, ACT_MAX, LOGIT_FRAC, LOGIT_MAX, WEIGHT_MAX, IntegerPrior, PriorConfig,
                                      context, weight_shift)

__all__ = ["IntegerPrior", "PriorConfig", "TokenPrior", "context"]  # the integer form's names, read from here too

def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class TokenPrior(nn.Module):
    """Float, quantization-aware form (training). ``forward(x)``: context ``(B, in_ch, H, W)`` → logits ``(B, D, H, W)``
    (already rounded to the integer form's 1/16 steps and range)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        chans = [cfg.in_channels] + [cfg.channels] * cfg.layers
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.out = nn.Conv2d(cfg.channels, cfg.bits, 1)

    def _qconv(self, conv: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        s = 2.0 ** weight_shift(conv.weight)
        w = _ste_round(conv.weight * s).clamp(-WEIGHT_MAX, WEIGHT_MAX) / s
        return F.conv2d(x, w, conv.bias, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = 2.0 ** ACT_FRAC
        for conv in self.convs:
            x = self._qconv(conv, x, 1)
            x = _ste_round(x.clamp(0, ACT_MAX / a) * a) / a
        z = self._qconv(self.out, x, 0)
        L = 2.0 ** LOGIT_FRAC
        return _ste_round(z.clamp(-LOGIT_MAX / L, LOGIT_MAX / L) * L) / L

    def loss(self, tokens: torch.Tensor, prev_tokens: torch.Tensor, has_prev: torch.Tensor,
             keep_bits: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy in bits per coded bit over all steps of a batch of latent frames.

        tokens / prev_tokens: int64 ``(B, H, W)``; has_prev: ``(B,)`` 0/1; keep_bits: ``(B,)`` coded bits per sample.
        """
        cfg = self.cfg
        b, h, w = tokens.shape
        keep = keep_bits if keep_bits is not None else torch.full((b,), cfg.bits, device=tokens.device)
        shifts = torch.arange(cfg.bits, device=tokens.device).view(1, -1, 1, 1)
        chan_ok = (torch.arange(cfg.bits, device=tokens.device)[None] < keep[:, None]).float()[:, :, None, None]
        bits = ((tokens[:, None] >> shifts) & 1).float()
        sign = (bits * 2 - 1) * chan_ok
        prev = ((((prev_tokens[:, None] >> shifts) & 1).float() * 2 - 1) * chan_ok
                * has_prev.float().view(b, 1, 1, 1))
        total = tokens.new_zeros((), dtype=torch.float32)
        count = chan_ok.sum() * h * w
        for step, pos, known in frame_steps(cfg.bits, cfg.group_bits, h, w):  # the coding order, as coded
            pos = torch.from_numpy(pos).to(tokens.device)
            known = torch.from_numpy(known).to(tokens.device)
            s, e = step.start, step.end
            logits = self(context(cfg, prev, sign * known, has_prev, step.pass_, step.group))
            ce = F.binary_cross_entropy_with_logits(logits[:, s:e], bits[:, s:e], reduction="none")
            total = total + (ce * chan_ok[:, s:e] * pos).sum()
        return total / count / np.log(2)

    def video_rate(self, codes: torch.Tensor, keep_bits: torch.Tensor | None = None,
                   checkpointed: bool = False) -> torch.Tensor:
        """Differentiable rate in bits of each clip's codes, as the integer form would code them in one GOP.

        codes: ``(B, D, T', H, W)`` signed bit values (``+-1``; straight-through quantizer codes carry the gradient to
        the encoder); keep_bits: ``(B,)`` coded bits per sample (the rest are not coded and cost nothing). The first
        latent frame is coded without temporal context, as a GOP's first. Walks ``frame_steps`` like ``loss``, so
        the rate trained is the rate coded. Returns ``(B,)`` bits (the cross-entropy ``-log2 P(bit)`` summed).
        ``checkpointed``: each step's network recomputed in the backward pass, not kept (the same gradients, in the
        memory of one step).
        """
        cfg = self.cfg
        b, d, t_, h, w = codes.shape
        if d != cfg.bits:
            raise ValueError(f"the prior codes {cfg.bits}-bit tokens, got {d} code channels")
        keep = keep_bits if keep_bits is not None else torch.full((b,), d, device=codes.device)
        chan_ok = (torch.arange(d, device=codes.device)[None] < keep[:, None]).to(codes.dtype)[:, :, None, None]
        steps = [(st, torch.from_numpy(pos).to(codes.device), torch.from_numpy(known).to(codes.device))
                 for st, pos, known in frame_steps(cfg.bits, cfg.group_bits, h, w)]
        total = codes.new_zeros(b)
        prev = codes.new_zeros(b, d, h, w)
        for t in range(t_):
            cur = codes[:, :, t] * chan_ok
            has_prev = torch.full((b,), float(t > 0), device=codes.device)
            for step, pos, known in steps:
                args = (step, prev, cur, has_prev, known, pos, chan_ok)
                total = total + (checkpoint(self._step_rate, *args, use_reentrant=False) if checkpointed
                                 else self._step_rate(*args))
            prev = cur
        return total / np.log(2)

    def _step_rate(self, step, prev, cur, has_prev, known, pos, chan_ok) -> torch.Tensor:
        """``video_rate``'s nats of one coding step, ``(B,)``."""
        s, e = step.start, step.end
        logits = self(context(self.cfg, prev, cur * known, has_prev, step.pass_, step.group))[:, s:e]
        ce = F.softplus(-logits * cur[:, s:e])  # -ln P(bit) for a bit of sign cur
        return (ce * chan_ok[:, s:e] * pos).sum((1, 2, 3))

    @classmethod
    def from_integer(cls, prior: "IntegerPrior") -> "TokenPrior":
        """The float form whose frozen integer form is ``prior`` again (to train further from a shipped prior)."""
        cfg = prior.cfg
        net = cls(cfg)
        in_frac = 0
        convs = list(net.convs) + [net.out]
        with torch.no_grad():
            for conv, w, b, shift in zip(convs, prior.weights, prior.biases, prior.shifts):
                out_frac = LOGIT_FRAC if conv is net.out else ACT_FRAC
                acc_frac = shift + out_frac
                sw = acc_frac - in_frac
                conv.weight.copy_((w.cpu() / 2.0 ** sw).float())
                conv.bias.copy_((b.cpu() / 2.0 ** acc_frac).float())
                in_frac = ACT_FRAC
        return net

    def regrouped(self, group_bits: int) -> "TokenPrior":
        """The same network coding in bit groups of ``group_bits``: more, smaller groups see more of their own
        token's bits when coded (each group conditions on the groups coded before it). A new group starts from the
        weights of the old group holding its first bit, so the regrouped prior starts where this one is."""
        cfg = dataclasses.replace(self.cfg, group_bits=group_bits)
        if not 1 <= group_bits <= cfg.bits:
            raise ValueError(f"group_bits must be in 1..{cfg.bits}, got {group_bits}")
        net = TokenPrior(cfg)
        state = self.state_dict()
        w = state["convs.0.weight"]
        base = cfg.in_channels - cfg.groups  # the inputs before the group one-hot (``context``)
        old = [base + (g * group_bits) // self.cfg.group_bits for g in range(cfg.groups)]
        state["convs.0.weight"] = torch.cat([w[:, :base], w[:, old]], 1)
        net.load_state_dict(state)
        return net

    def freeze(self) -> "IntegerPrior":
        """The integer inference form: integer weights/biases, shifts and the logit→probability table."""
        return IntegerPrior.from_float(self)
