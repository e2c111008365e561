"""The token prior's integer form, the one coding uses: bit-exact probabilities on every machine.

``IntegerPrior`` is what ``TokenPrior.freeze()`` (``codec/prior.py``, the float form that trains) makes: integer
weights, integer activations and power-of-two requantization, run in float64 (or float32 where that is exact) on
integer values only, so every product and partial sum is an integer far below 2**53 and the results do not depend
on summation order, thread count or device. Coding (``step_probabilities``) runs the same integers as int8 matrix
products with int32 sums where the CPU's kernel is exact (``codec/prior_int8.py``). The final integer logit indexes
a fixed integer table of probabilities stored with the weights. The quantization constants, the architecture
(``PriorConfig``) and the network's input (``context``) live here because both forms use them: the float form is
trained to land exactly on this one's numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtok.codec.entropy import anchor_mask
from vtok.codec.prior_int8 import Int8Convs, available

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


def context(cfg: PriorConfig, prev: torch.Tensor, cur: torch.Tensor, has_prev: torch.Tensor, pass_: int, group: int):
    """Network input ``(B, in_ch, H, W)`` from ``prev``/``cur`` signed bit planes ``(B, D, H, W)`` in {-1, 0, 1}."""
    b, _, h, w = prev.shape
    planes = [prev, cur, has_prev.view(b, 1, 1, 1).expand(b, 1, h, w).to(prev.dtype)]
    onehot = torch.zeros(b, 2 + cfg.groups, h, w, dtype=prev.dtype, device=prev.device)
    onehot[:, pass_] = 1
    onehot[:, 2 + group] = 1
    return torch.cat(planes + [onehot], 1)


def _at_pass(out: torch.Tensor, pass_: int, at) -> torch.Tensor:
    """``out`` ``(k, H, W)`` filled at checkerboard pass ``pass_``'s positions, row parity by row parity (``at(row,
    col)`` gives the values at rows ``row::2``, columns ``col::2``), then those positions in raster order ``(k, n)``."""
    h, w = out.shape[-2:]
    for row in (0, 1):
        col = (pass_ + row) % 2
        if row < h and col < w:
            out[:, row::2, col::2] = at(row, col)
    return out[:, torch.from_numpy(anchor_mask(h, w) if pass_ == 0 else ~anchor_mask(h, w)).to(out.device)]


@contextlib.contextmanager
def _exact():
    """Convolutions that keep integers exact: no TF32 products, no cuDNN (which may pick Winograd or FFT)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def weight_shift(w: torch.Tensor) -> int:
    """Largest s with ``max|w| * 2**s <= 127`` (weights are stored as ``round(w * 2**s)``)."""
    m = float(w.detach().abs().max().clamp_min(1e-8))
    return int(np.floor(np.log2(WEIGHT_MAX / m)))


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
        """float32 when it is exact too: every partial sum (twice the largest: ``_first_sums``) below 2**24 and a
        self-check against float64 agrees.

        Either dtype gives the same integers; float32 is only faster. The check guards against a backend that would
        not compute float32 convolutions exactly (e.g. reduced-precision modes).
        """
        self._set_dtype(torch.float64)
        self.use_int8(True)
        if 2 * self._accumulator_bound() >= 2 ** 24:
            return
        g = torch.Generator().manual_seed(0)
        x = torch.randint(-1, 2, (1, self.cfg.in_channels, 12, 13), generator=g).to(self.device, torch.float64)
        ref = self.logits(x)
        self._set_dtype(torch.float32)
        if not torch.equal(self.logits(x).double(), ref):
            self._set_dtype(torch.float64)

    def use_int8(self, on: bool) -> None:
        """Run ``pass_logits`` on int8 matrix products (``codec/prior_int8.py``) where they are exact here (CPU, a
        kernel that passes ``available()``, weights and sums in range); the same integers either way."""
        ok = (on and self.device.type == "cpu" and len(self.weights) > 2
              and Int8Convs.fits(self.weights, self.biases, self.shifts, ACT_MAX) and available())
        self._int8 = Int8Convs(self.weights, self.biases, self.shifts) if ok else None

    def _set_dtype(self, dtype: torch.dtype) -> None:
        """Keep the weights in the dtype inference runs in, converted once rather than at every step."""
        self.dtype = dtype
        self._local = threading.local()  # the first layer's last sums (``_first_sums``), per thread
        # channels-last: oneDNN's fast layout on the CPU (the same integers in any layout)
        self._run_weights = [(w.to(dtype).contiguous(memory_format=torch.channels_last), b.to(dtype))
                             for w, b in zip(self.weights, self.biases)]

    def __getstate__(self) -> dict:  # to workers: without the per-thread sums
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    @classmethod
    def from_float(cls, prior) -> "IntegerPrior":
        """The frozen form of a float ``TokenPrior`` (``codec/prior.py``): weights rounded at ``weight_shift``."""
        cfg = prior.cfg
        weights, biases, shifts = [], [], []
        in_frac = 0  # inputs are integers in {-1, 0, 1}
        convs = list(prior.convs) + [prior.out]
        for i, conv in enumerate(convs):
            sw = weight_shift(conv.weight)
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

    def logits(self, x: torch.Tensor, incremental: bool = False) -> torch.Tensor:
        """Integer logits (units of 1/16) ``(B, D, H, W)`` from an integer context ``(B, in_ch, H, W)``.

        ``incremental``: the first layer's sums are updated from the previous call's (this thread's) with the
        context channels that changed alone — a coding step changes a group's bits of the current frame — which
        are the same integers, computed with a third of the work; the other layers run in full."""
        with _exact():
            n = len(self.weights)
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            for i, ((w, b), s) in enumerate(zip(self._run_weights, self.shifts)):
                x = self._first_sums(x, incremental) if i == 0 else F.conv2d(x, w, b, padding=w.shape[-1] // 2)
                x = self._requant(x, s)
                x = x.clamp(-LOGIT_MAX, LOGIT_MAX) if i == n - 1 else x.clamp(0, ACT_MAX)
        return x.double()

    def _first_sums(self, x: torch.Tensor, incremental: bool) -> torch.Tensor:
        """The first layer's integer sums of context ``x``; ``incremental``: from the last ones of this thread plus
        the change of ``x`` since, on its changed channels only, when fewer than half changed. Exact either way:
        a context change is at most 2 in size, and ``_choose_dtype`` keeps float32 only where twice the largest sum
        stays below 2**24."""
        w, b = self._run_weights[0]
        last = getattr(self._local, "first", None) if incremental else None
        if last is not None and last[0].shape == x.shape:
            delta = x - last[0]
            changed = delta.abs().amax((0, 2, 3)).nonzero().flatten()
            if not len(changed):  # a step with no positions (a frame too small for its pass)
                return last[1]
            if 2 * len(changed) < x.shape[1]:
                sums = last[1] + F.conv2d(delta[:, changed], w[:, changed], None, padding=w.shape[-1] // 2)
                self._local.first = (x, sums)
                return sums
        sums = F.conv2d(x, w, b, padding=w.shape[-1] // 2)
        if incremental:
            self._local.first = (x, sums)
        return sums

    def step_probabilities(self, prev: np.ndarray, cur: np.ndarray, has_prev: bool, step) -> np.ndarray:
        """Integer ``P(bit = 1)`` (units of ``2**-prob_bits``) for the bits coded in ``step``, in coding order.

        prev / cur: int8 signed planes ``(D, H, W)`` in {-1, 0, 1}. step: ``(pass, group, start, end)``.
        Coding order: bit channel ``start .. end-1``, then the step's positions in raster order.
        """
        p, g, s, e = step
        if self._int8 is not None:
            x = context(self.cfg, torch.from_numpy(prev[None]), torch.from_numpy(cur[None]),
                        torch.tensor([has_prev], dtype=torch.int8), p, g)[0].numpy()
            return self.table[self._int8_pass_logits(x, p, s, e).numpy().ravel().astype(np.int64) + LOGIT_MAX]
        x = context(self.cfg, torch.from_numpy(prev[None]).double(), torch.from_numpy(cur[None]).double(),
                    torch.tensor([float(has_prev)], dtype=torch.float64), p, g).to(self.device)
        lg = self.pass_logits(x, p, s, e).cpu().numpy().astype(np.int64)
        return self.table[lg.ravel() + LOGIT_MAX]

    def pass_logits(self, x: torch.Tensor, pass_: int, start: int, end: int) -> torch.Tensor:
        """``logits(x, incremental=True)[0, start:end]`` at the positions of checkerboard pass ``pass_`` alone, in
        raster order: ``(end - start, n_positions)``. The same integers with less work: the last 3×3 layer is
        computed where the output layer (1×1) reads it, the step's positions (two stride-2 convolutions, one per
        parity of row), and the output layer for the step's bits alone."""
        if self._int8 is not None:
            return self._int8_pass_logits(x[0].to(torch.int8).cpu().numpy(), pass_, start, end).double()
        with _exact():
            n = len(self._run_weights)
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            for i, ((w, b), sh) in enumerate(zip(self._run_weights[:n - 2], self.shifts)):
                x = self._first_sums(x, True) if i == 0 else F.conv2d(x, w, b, padding=w.shape[-1] // 2)
                x = self._requant(x, sh).clamp(0, ACT_MAX)
            (w3, b3), (wo, bo) = self._run_weights[n - 2:]
            pad = F.pad(x, (1, 1, 1, 1))

            def at(row, col):
                y = F.conv2d(pad[:, :, row:, col:], w3, b3, stride=2)
                y = self._requant(y, self.shifts[n - 2]).clamp(0, ACT_MAX)
                y = self._requant(F.conv2d(y, wo[start:end], bo[start:end]), self.shifts[n - 1])
                return y[0].clamp(-LOGIT_MAX, LOGIT_MAX)

            out = torch.zeros(end - start, *x.shape[-2:], dtype=self.dtype, device=x.device)
            return _at_pass(out, pass_, at).double()

    def _int8_pass_logits(self, x: np.ndarray, pass_: int, start: int, end: int) -> torch.Tensor:
        """``pass_logits`` of an int8 context ``(C_in, H, W)`` on int8 matrix products (``Int8Convs``): the same
        integers, as int32."""
        k, n = self._int8, len(self.weights)
        _, h, w = x.shape
        a = k.first(x, self._local, True)
        for i in range(1, n - 2):
            a = k.hidden(a, i, (h, w), self._local)

        def at(row, col):
            lg = k.output(k.hidden(a, n - 2, (h, w), self._local, (row, col)), start, end, LOGIT_MAX)
            return lg.t().reshape(end - start, len(range(row, h, 2)), len(range(col, w, 2)))

        return _at_pass(torch.zeros(end - start, h, w, dtype=torch.int32), pass_, at)

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
