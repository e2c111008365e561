"""The token prior: P(bit = 1) for every bit of every token, with bit-exact integer inference.

Context model in the spirit of checkerboard context modelling (He et al., "Checkerboard Context Model for Efficient
Learned Image Compression", arXiv 2103.15306) applied to binary token planes, with temporal context from the previous
latent frame as in conditional video coding (Li et al., DCVC, arXiv 2109.15047), and the bit-group ("sub-token")
split of MAGVIT-v2's LFQ tokens (arXiv 2310.05737).

Coding order inside one latent frame (``codec.entropy.frame_steps``, shared with coding): two checkerboard passes
(anchors ``(y + x) % 2 == 0`` first), and inside each pass the bit groups in order (e.g. bits 0-8, then 9-17). Each
of these *steps* is one evaluation of a small CNN that sees: the previous latent frame's bits, the bits of the current frame known so far (``+1/-1``, ``0`` unknown), and
which step it is. It works on the bits of any token index, so every quantizer's tokens can be coded by it.

Bit-exactness (the decoder must rebuild the encoder's probabilities exactly, whatever the machine): the network is
trained quantization-aware and then frozen (``TokenPrior.freeze()`` → ``IntegerPrior``) to integer weights, integer
activations and power-of-two requantization. Inference runs in float64 on integer values only: every product and
partial sum is an integer far below 2**53, so the results are exact in any summation order, thread count or device.
The final integer logit indexes a fixed integer table of probabilities stored with the weights.

Layouts: bits ``(D, H, W)`` uint8 planes per latent frame inside; token indices ``(T', H', W')`` at the edges.
Long: the float (training) and integer (coding) forms stay in one module, past the usual 350 lines, because the
second is derived from the first number by number; keeping their quantization constants side by side is what makes
them agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.entropy import anchor_mask, frame_steps

ACT_FRAC = 4  # activations: 1/16 steps, 8-bit unsigned (0 .. 255/16)
ACT_MAX = 255
LOGIT_FRAC = 4  # logits: 1/16 steps
LOGIT_MAX = 255  # |logit| <= 255/16 ≈ 16
WEIGHT_MAX = 127  # int8 weights


@dataclass
class PriorConfig:
    """Architecture of the token prior. bits: the tokenizer's bits per token. group_bits: bits per group (step).
    channels: hidden width. layers: 3×3 convolutions (the last is followed by a 1×1 output layer). prob_bits:
    precision of the coded probabilities."""

    bits: int = 18
    group_bits: int = 9
    channels: int = 48
    layers: int = 3
    prob_bits: int = 16

    @property
    def groups(self) -> int:
        return -(-self.bits // self.group_bits)

    @property
    def in_channels(self) -> int:
        return 2 * self.bits + 3 + self.groups


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def context(cfg: PriorConfig, prev: torch.Tensor, cur: torch.Tensor, has_prev: torch.Tensor, pass_: int, group: int):
    """Network input ``(B, in_ch, H, W)`` from ``prev``/``cur`` signed bit planes ``(B, D, H, W)`` in {-1, 0, 1}."""
    b, _, h, w = prev.shape
    planes = [prev, cur, has_prev.view(b, 1, 1, 1).expand(b, 1, h, w).to(prev.dtype)]
    onehot = torch.zeros(b, 2 + cfg.groups, h, w, dtype=prev.dtype, device=prev.device)
    onehot[:, pass_] = 1
    onehot[:, 2 + group] = 1
    return torch.cat(planes + [onehot], 1)


class TokenPrior(nn.Module):
    """Float, quantization-aware form (training). ``forward(x)``: context ``(B, in_ch, H, W)`` → logits ``(B, D, H, W)``
    (already rounded to the integer form's 1/16 steps and range)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        chans = [cfg.in_channels] + [cfg.channels] * cfg.layers
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.out = nn.Conv2d(cfg.channels, cfg.bits, 1)

    @staticmethod
    def weight_shift(w: torch.Tensor) -> int:
        """Largest s with ``max|w| * 2**s <= 127`` (weights are stored as ``round(w * 2**s)``)."""
        m = float(w.detach().abs().max().clamp_min(1e-8))
        return int(np.floor(np.log2(WEIGHT_MAX / m)))

    def _qconv(self, conv: nn.Conv2d, x: torch.Tensor, padding: int) -> torch.Tensor:
        s = 2.0 ** self.weight_shift(conv.weight)
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

    def video_rate(self, codes: torch.Tensor, keep_bits: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable rate in bits of each clip's codes, as the integer form would code them in one GOP.

        codes: ``(B, D, T', H, W)`` signed bit values (``+-1``; straight-through quantizer codes carry the gradient to
        the encoder); keep_bits: ``(B,)`` coded bits per sample (the rest are not coded and cost nothing). The first
        latent frame is coded without temporal context, as a GOP's first. Walks ``frame_steps`` like ``loss``, so
        the rate trained is the rate coded. Returns ``(B,)`` bits (the cross-entropy ``-log2 P(bit)`` summed).
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
                s, e = step.start, step.end
                logits = self(context(cfg, prev, cur * known, has_prev, step.pass_, step.group))[:, s:e]
                ce = F.softplus(-logits * cur[:, s:e])  # -ln P(bit) for a bit of sign cur
                total = total + (ce * chan_ok[:, s:e] * pos).sum((1, 2, 3))
            prev = cur
        return total / np.log(2)

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


class IntegerPrior:
    """Integer inference form of the token prior (what ``compress``/``decompress`` use).

    ``step_probabilities(prev, cur, has_prev, step)`` gives the integer probabilities of one coding step. All arithmetic is on integers held in float tensors: float64, or float32 where every
    partial sum stays below 2**24 (both exact), on CPU or GPU.
    """

    def __init__(self, cfg: PriorConfig, weights: list, biases: list, shifts: list, table: np.ndarray):
        self.cfg = cfg
        self.weights = [torch.as_tensor(w, dtype=torch.float64) for w in weights]
        self.biases = [torch.as_tensor(b, dtype=torch.float64) for b in biases]
        self.shifts = [int(s) for s in shifts]
        self.table = np.asarray(table, dtype=np.int64)
        self.device = torch.device("cpu")
        self.dtype = torch.float64
        self._choose_dtype()

    def _accumulator_bound(self) -> float:
        """Largest |partial sum| any layer can reach (inputs are at most 1, later activations at most ACT_MAX)."""
        bound, in_max = 0.0, 1.0
        for w, b in zip(self.weights, self.biases):
            per_out = w.abs().flatten(1).sum(1) * in_max + b.abs()
            bound = max(bound, float(per_out.max()))
            in_max = float(ACT_MAX)
        return bound

    def _choose_dtype(self) -> None:
        """float32 when it is exact too: every partial sum below 2**24 and a self-check against float64 agrees.

        Either dtype gives the same integers; float32 is only faster. The check guards against a backend that would
        not compute float32 convolutions exactly (e.g. reduced-precision modes).
        """
        self._set_dtype(torch.float64)
        if self._accumulator_bound() >= 2 ** 24:
            return
        g = torch.Generator().manual_seed(0)
        x = torch.randint(-1, 2, (1, self.cfg.in_channels, 12, 13), generator=g).to(self.device, torch.float64)
        ref = self.logits(x)
        self._set_dtype(torch.float32)
        if not torch.equal(self.logits(x).double(), ref):
            self._set_dtype(torch.float64)

    def _set_dtype(self, dtype: torch.dtype) -> None:
        """Keep the weights in the dtype inference runs in, converted once rather than at every step."""
        self.dtype = dtype
        self._run_weights = [(w.to(dtype), b.to(dtype)) for w, b in zip(self.weights, self.biases)]

    @classmethod
    def from_float(cls, prior: TokenPrior) -> "IntegerPrior":
        cfg = prior.cfg
        weights, biases, shifts = [], [], []
        in_frac = 0  # inputs are integers in {-1, 0, 1}
        convs = list(prior.convs) + [prior.out]
        for i, conv in enumerate(convs):
            sw = TokenPrior.weight_shift(conv.weight)
            w = torch.round(conv.weight.detach().double() * 2.0 ** sw).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            acc_frac = sw + in_frac
            b = torch.round(conv.bias.detach().double() * 2.0 ** acc_frac)
            out_frac = LOGIT_FRAC if i == len(convs) - 1 else ACT_FRAC
            weights.append(w)
            biases.append(b)
            shifts.append(acc_frac - out_frac)
            in_frac = ACT_FRAC
        one = 1 << cfg.prob_bits
        lg = np.arange(-LOGIT_MAX, LOGIT_MAX + 1, dtype=np.float64) / 2 ** LOGIT_FRAC
        table = np.clip(np.round(one / (1 + np.exp(-lg))), 1, one - 1).astype(np.int64)
        return cls(cfg, weights, biases, shifts, table)

    def on(self, device) -> "IntegerPrior":
        """A copy on ``device`` (this one stays where it is)."""
        return IntegerPrior(self.cfg, [w.cpu() for w in self.weights], [b.cpu() for b in self.biases], self.shifts,
                            self.table).to(device)

    def to(self, device) -> "IntegerPrior":
        self.device = torch.device(device)
        self.weights = [w.to(self.device) for w in self.weights]
        self.biases = [b.to(self.device) for b in self.biases]
        self._choose_dtype()
        return self

    @staticmethod
    def _requant(acc: torch.Tensor, shift: int) -> torch.Tensor:
        if shift > 0:
            return torch.floor((acc + 2.0 ** (shift - 1)) / 2.0 ** shift)
        return acc * 2.0 ** (-shift)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Integer logits (units of 1/16) ``(B, D, H, W)`` from an integer context ``(B, in_ch, H, W)``."""
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round the products
        try:
            with torch.backends.cudnn.flags(enabled=False):  # cuDNN may pick inexact (Winograd/FFT) algorithms
                n = len(self.weights)
                x = x.to(self.dtype)
                for i, ((w, b), s) in enumerate(zip(self._run_weights, self.shifts)):
                    x = F.conv2d(x, w, b, padding=w.shape[-1] // 2)
                    x = self._requant(x, s)
                    x = x.clamp(-LOGIT_MAX, LOGIT_MAX) if i == n - 1 else x.clamp(0, ACT_MAX)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
        return x.double()

    def step_probabilities(self, prev: np.ndarray, cur: np.ndarray, has_prev: bool, step) -> np.ndarray:
        """Integer ``P(bit = 1)`` (units of ``2**-prob_bits``) for the bits coded in ``step``, in coding order.

        prev / cur: int8 signed planes ``(D, H, W)`` in {-1, 0, 1}. step: ``(pass, group, start, end)``.
        Coding order: bit channel ``start .. end-1``, then the step's positions in raster order.
        """
        p, g, s, e = step
        h, w = prev.shape[1:]
        x = context(self.cfg, torch.from_numpy(prev[None]).double(), torch.from_numpy(cur[None]).double(),
                    torch.tensor([float(has_prev)], dtype=torch.float64), p, g).to(self.device)
        lg = self.logits(x)[0, s:e].cpu().numpy().astype(np.int64)
        pos = anchor_mask(h, w) if p == 0 else ~anchor_mask(h, w)
        return self.table[lg[:, pos].ravel() + LOGIT_MAX]

    # --- storage ---------------------------------------------------------------------------------------------------
    def tensors(self) -> dict:
        t = {"table": torch.from_numpy(self.table.astype(np.int32))}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            t[f"w{i}"] = w.cpu().to(torch.int32)
            t[f"b{i}"] = b.cpu().to(torch.int64)
        t["shifts"] = torch.tensor(self.shifts, dtype=torch.int32)
        return t

    @property
    def model_id(self) -> str:
        h = hashlib.sha256(json.dumps(dataclasses.asdict(self.cfg), sort_keys=True).encode())
        for k, v in sorted(self.tensors().items()):
            h.update(k.encode())
            h.update(v.numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        # The weights are int8 by construction (|w| <= WEIGHT_MAX): stored so, a quarter of the bytes; the id and
        # the arithmetic use them as int32/float64 whatever the stored type.
        t = {k: v.to(torch.int8) if k[0] == "w" and v.abs().max() <= WEIGHT_MAX else v
             for k, v in self.tensors().items()}
        save_file(t, str(tmp), metadata={"format": "vtok-prior", "config": json.dumps(dataclasses.asdict(self.cfg))})
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "IntegerPrior":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"{path} is not a safetensors prior file ({e})") from None
        if meta.get("format") != "vtok-prior":
            raise ValueError(f"{path} is not a vtok prior file")
        cfg = PriorConfig(**json.loads(meta["config"]))
        n = cfg.layers + 1
        expected = {"table", "shifts"} | {f"w{i}" for i in range(n)} | {f"b{i}" for i in range(n)}
        if set(t) != expected:
            raise ValueError(f"{path}: prior tensors do not match its config")
        return cls(cfg, [t[f"w{i}"] for i in range(n)], [t[f"b{i}"] for i in range(n)],
                   t["shifts"].tolist(), t["table"].numpy())
