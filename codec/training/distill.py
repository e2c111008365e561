"""Stage 1 of the TAEF2-based tokenizer's training: distil the cheap stem and head from TAEF2 on single frames.

TAEF2's full- and half-resolution stages are replaced by a space-to-depth stem and a depth-to-space head
(``codec.models.tae``). Before any video training they learn, on random crops of single frames, to stand in for those
stages: the stem to reproduce TAEF2's 1/4-resolution encoder features (mean squared error), the head to decode
TAEF2's 1/4-resolution decoder features of the same frame back to the picture (L1 + LPIPS against the frame). The
teacher is frozen and runs on the fly; this stage is feature-level knowledge distillation (Hinton et al.,
arXiv 1503.02531; FitNets' hint layers, arXiv 1412.6550).

Resumable: ``<run>/distill-state.safetensors`` holds stem, head, optimizer state and the step;
``<run>/stem-head.safetensors`` the exported stem and head (what ``vtok train --arch tae`` starts from).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vtok.codec.training.data import ClipSampler, build_cache
from vtok.codec.models.perceptual import build_lpips
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.models.tae import CheapHead, CheapStem
from vtok.codec.training.toolkit import (MetricsLog, cosine_lr, load_checkpoint, save_checkpoint, save_tensors,
                                         set_lr)
from vtok.codec.models.taef2 import load_taef2


def load_stem_head(path) -> tuple[dict, dict]:
    """The stem's and the head's tensors from a ``stem-head.safetensors`` file."""
    from safetensors.torch import load_file

    t = load_file(str(path))
    stem = {k[5:]: v for k, v in t.items() if k.startswith("stem.")}
    head = {k[5:]: v for k, v in t.items() if k.startswith("head.")}
    if not stem or not head:
        raise ValueError(f"{path} holds no stem./head. tensors")
    return stem, head


def distill(run_dir, data=(str(TRAIN_DATA),), cache_dir: str = "", steps: int = 2000,
            batch: int = 16, crop: int = 96, lr: float = 1e-3, lpips_weight: float = 0.5, taef2=None,
            save_every_s: float = 120.0, seed: int = 0, log=print) -> Path:
    """Train (or resume) the stem and head; returns the path of ``stem-head.safetensors``."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir or run / "cache")
    if not (cache / "index.json").exists():
        build_cache(list(data), cache, log=log)
    torch.manual_seed(seed)
    teacher_enc, teacher_dec = load_taef2(taef2)
    stem, head = CheapStem(), CheapHead()
    opt = torch.optim.Adam([*stem.parameters(), *head.parameters()], lr=lr, betas=(0.9, 0.99))
    lpips = build_lpips() if lpips_weight > 0 else None
    state_path, step, parts_of_run = run / "distill-state.safetensors", 0, ({"stem": stem, "head": head}, {"opt": opt})
    if state_path.exists():
        step, _ = load_checkpoint(state_path, *parts_of_run)
        log(f"resumed {state_path} at step {step}")
    sampler = ClipSampler(cache, 1, crop, seed=seed * 1000 + step)
    metrics, last = MetricsLog(run / "distill-metrics.jsonl"), time.time()

    def export():
        save_checkpoint(state_path, step, *parts_of_run)
        tensors = {f"stem.{k}": v for k, v in stem.state_dict().items()}
        tensors.update({f"head.{k}": v for k, v in head.state_dict().items()})
        save_tensors(run / "stem-head.safetensors", tensors, {"step": step, "format": "vtok-stem-head"})

    while step < steps:
        x = sampler.sample(batch)[:, :, 0].add(1).mul(0.5)  # (B, 3, crop, crop) in [0, 1]
        with torch.no_grad():
            f_t = teacher_enc.features(x)
            g_t = teacher_dec.features(teacher_enc.run(f_t, 7, 15))
        set_lr(opt, cosine_lr(step, steps, lr, warmup=100, min_ratio=0.1))
        f_s = stem(x)
        stem_loss = F.mse_loss(f_s, f_t) / f_t.var().clamp_min(1e-6)
        y = head(g_t)
        l1 = (y - x).abs().mean()
        total = stem_loss + l1
        parts = {"stem": stem_loss.item(), "l1": l1.item()}
        if lpips is not None:
            lp = lpips(y * 2 - 1, x * 2 - 1).mean()
            total = total + lpips_weight * lp
            parts["lpips"] = lp.item()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        step += 1
        if step % 10 == 0:
            with torch.no_grad():
                parts["psnr"] = float(10 * torch.log10(1 / F.mse_loss(y.clamp(0, 1), x)))
            metrics.write(step=step, time=time.time(), **parts)
            log(f"step {step}: " + " ".join(f"{k} {v:.4f}" for k, v in parts.items()))
        if time.time() - last > save_every_s or step == steps:
            export()
            last = time.time()
    metrics.close()
    if not (run / "stem-head.safetensors").exists():
        export()
    return run / "stem-head.safetensors"
