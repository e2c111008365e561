"""What every training loop here shares: the learning-rate schedule, the weights' moving average, resumable
safetensors checkpoints (no pickle) and the metrics log.

Used by ``train`` (the tokenizer), ``train_prior`` (the token prior) and ``distill`` (the TAEF2 stem and head).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn


def cosine_lr(step: int, steps: int, lr: float, warmup: int = 0, min_ratio: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``lr`` down to ``min_ratio · lr`` at ``steps``.

    >>> cosine_lr(0, 100, 1.0, warmup=10), cosine_lr(10, 100, 1.0, warmup=10), cosine_lr(100, 100, 1.0, 10, 0.1)
    (0.1, 1.0, 0.1)
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """``lr`` on every parameter group, times the group's own ``mult`` where it has one."""
    for g in opt.param_groups:
        g["lr"] = lr * g.get("mult", 1.0)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema ← decay · ema + (1 − decay) · model`` for the parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def save_tensors(path, tensors: dict, meta: dict | None = None) -> None:
    """Write named tensors (and string metadata) to a safetensors file, atomically (a temporary file renamed)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={k: str(v) for k, v in (meta or {}).items()})
    tmp.replace(path)


def flat_optimizer_state(opt: torch.optim.Optimizer, prefix: str) -> dict:
    """An optimizer's state as flat named tensors (``PREFIX.PARAM_INDEX.KEY``), for a safetensors checkpoint."""
    out = {}
    for i, p in enumerate(p for g in opt.param_groups for p in g["params"]):
        for k, v in opt.state.get(p, {}).items():
            out[f"{prefix}.{i}.{k}"] = v.detach().cpu() if torch.is_tensor(v) else torch.tensor(float(v))
    return out


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict, prefix: str) -> None:
    """Put back what ``flat_optimizer_state`` saved under ``prefix`` (parameters in the same order)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"{prefix}.{i}.")}
        if st:
            opt.state[p] = {k: v.to(p.device) for k, v in st.items()}


def save_checkpoint(path, step: int, modules: dict, optimizers: dict, meta: dict | None = None) -> None:
    """A run's state in one safetensors file: every module's tensors under its name (``model.…``), every
    optimizer's state under its name, the step and ``meta`` as metadata. Entries that are None are left out."""
    tensors = {}
    for name, m in modules.items():
        if m is not None:
            tensors.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    for name, opt in optimizers.items():
        if opt is not None:
            tensors.update(flat_optimizer_state(opt, name))
    save_tensors(path, tensors, {"step": step, **(meta or {})})


def load_checkpoint(path, modules: dict, optimizers: dict) -> tuple[int, dict]:
    """Put a ``save_checkpoint`` file back into ``modules`` (strictly) and ``optimizers``; a module or optimizer the
    file has nothing for (None, or a part added since) is left as it is. Returns ``(step, metadata)``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    for name, m in modules.items():
        own = {k[len(name) + 1:]: v for k, v in t.items() if k.startswith(name + ".")}
        if m is not None and own:
            m.load_state_dict(own, strict=True)
    for name, opt in optimizers.items():
        if opt is not None:
            load_optimizer_state(opt, t, name)
    return int(meta["step"]), meta


class MetricsLog:
    """``metrics.jsonl`` of a run: one JSON object per line, appended and flushed as it goes (a resumed run
    continues the same file). ``None`` as the path logs nothing (a training process other than the first)."""

    def __init__(self, path):
        self.f = open(path, "a") if path is not None else None
        self.t0 = time.time()

    def write(self, **row) -> None:
        if self.f is not None:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
