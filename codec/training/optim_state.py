"""Optimizer state in safetensors checkpoints: flattened to named tensors and put back, for every resumable run."""

from __future__ import annotations

import torch


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
