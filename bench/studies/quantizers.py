"""The quantizer ablation (``vtok bench quantizers``): every quantizer trained alike, then measured alike.

Each quantizer gets the same tokenizer backbone, the same training data, steps, crops, schedule and losses, and the
same bits per token; then a token prior of its own (same steps) so its tokens go through real ``.vtok`` files. On
the evaluation clips it reports reconstruction quality of the decoded files (PSNR, MS-SSIM, LPIPS), codebook usage of
the tokens (perplexity and share of codes used, per sub-codebook where there are several) and bpp. Everything is kept
in ``<out>/<name>/`` so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vtok.bench.datasets import eval_clips
from vtok.bench.analysis.metrics import LPIPSMetric, clip_metrics
from vtok.bench.peers.codecs import VtokBenchCodec, VtokSettings
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.zoo import load_tokenizer, prior_path
from vtok.codec.training.train import TrainConfig, train
from vtok.codec.training.train_prior import train_prior


# Each entry of the ablation: (quantizer, its settings); the bits per token are set separately.
ENTRIES = {
    "lfq": ("lfq", {}),
    "vq": ("vq", {"dim": 8}),
    "fq": ("fq", {"branches": 2, "dim": 16, "code_dim": 8}),
    "gsq": ("gsq", {"groups": 2, "group_dim": 8}),
    "gsq-restart": ("gsq", {"groups": 2, "group_dim": 8, "restart_every": 100}),
    "regvq": ("regvq", {"dim": 8}),
}


@dataclass
class QuantizerAblation:
    names: list = field(default_factory=lambda: ["lfq", "vq", "fq", "gsq", "gsq-restart", "regvq"])
    bits: int = 12
    steps: int = 400
    prior_steps: int = 300
    prior_clips: int = 40  # training clips whose tokens train each prior
    batch: int = 4
    frames: int = 5  # training clip length
    crop: int = 64
    lr: float = 1e-3
    warmup: int = 50
    lpips_weight: float = 0.1
    stem_ch: int = 16
    ch: int = 64
    train_data: list = field(default_factory=lambda: [str(TRAIN_DATA)])
    cache: str = ""
    eval_data: list | None = None
    frames_eval: int = 17
    size: tuple = (640, 360)
    out: str = "runs/quantizers"
    seed: int = 0

    @property
    def cache_dir(self) -> str:
        return self.cache or str(Path(self.out) / "cache")


def _train_one(name: str, cfg: QuantizerAblation, log):
    """Train (or finish training) entry ``name``; returns (weights path, loaded tokenizer)."""
    run = Path(cfg.out) / name
    model = run / "ema.safetensors"
    if model.exists():
        tok = load_tokenizer(model)
        if tok.meta.get("step") == str(cfg.steps):
            return model, tok
    if name not in ENTRIES:
        raise ValueError(f"unknown ablation entry {name!r}; choose from {', '.join(ENTRIES)}")
    quantizer, qargs = ENTRIES[name]
    mcfg = TokenizerConfig(quantizer=quantizer, bits=cfg.bits, stem_ch=cfg.stem_ch, ch=cfg.ch, nested_dropout=0.0,
                           quantizer_args=qargs)
    tcfg = TrainConfig(run_dir=str(run), data=list(cfg.train_data), cache_dir=cfg.cache_dir,
                       steps=cfg.steps, batch=cfg.batch, frames=cfg.frames, crop=cfg.crop, lr=cfg.lr,
                       warmup=cfg.warmup, lpips_weight=cfg.lpips_weight, seed=cfg.seed, save_every_s=120.0,
                       progress=False, log_every=20)
    log(f"{name}: training {cfg.steps} steps in {run}")
    model = train(tcfg, mcfg, resume=True, log=log)
    return model, load_tokenizer(model)


def _prior_one(name: str, model: Path, cfg: QuantizerAblation, log) -> Path:
    out = prior_path(model)
    if not out.exists():
        log(f"{name}: training its token prior ({cfg.prior_steps} steps)")
        train_prior(model, out, cfg.train_data, cfg.cache_dir,
                    str(Path(cfg.out) / name / "prior"), steps=cfg.prior_steps, max_clips=cfg.prior_clips,
                    log=log)
    return out


def _measure(name: str, model: Path, tok, cfg: QuantizerAblation, lp, log) -> dict:
    rows, tokens, pixels = [], [], 0
    bc = VtokBenchCodec(VtokSettings(str(model)))
    for clip_name, clip in eval_clips(cfg.eval_data, cfg.frames_eval, cfg.size):
        dec, nbytes, _ = bc.run(clip, None)
        t, h, w, _ = clip.shape
        pixels += t * h * w
        rows.append({"clip": clip_name, "bpp": nbytes * 8 / (t * h * w), **clip_metrics(clip, dec, lp)})
        tokens.append(torch.as_tensor(tok.encode(clip)).reshape(-1))
    usage = tok.quantizer.usage(torch.cat(tokens))
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("bpp", "psnr", "ms_ssim", "lpips") if k in rows[0]}
    res = {"quantizer": name, "model_id": tok.model_id, "params": sum(p.numel() for p in tok.parameters()),
           "config": json.loads(tok.cfg.to_json()), "raw_bpp": tok.bits * sum(len(x) for x in tokens) / pixels,
           "mean": mean, "usage": usage, "clips": rows}
    log(f"{name}: {mean['bpp']:.4f} bpp, PSNR {mean['psnr']:.2f} dB, MS-SSIM {mean.get('ms_ssim', float('nan')):.4f}, "
        f"LPIPS {mean['lpips']:.4f}, perplexity {usage['perplexity']:.0f} of {2 ** tok.bits}, "
        f"{100 * usage['used']:.1f} % of codes used")
    return res


def run_ablation_of(json_path=None, log=print, **settings) -> dict:
    """``vtok bench quantizers``: ``run_ablation`` of the ``QuantizerAblation`` that ``settings`` describe."""
    return run_ablation(QuantizerAblation(**settings), json_path, log)


def run_ablation(cfg: QuantizerAblation, json_path=None, log=print) -> dict:
    """Train (or continue), prior, measure every quantizer of ``cfg.names``; returns (and writes) the table."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    lp = LPIPSMetric()
    results = []
    for name in cfg.names:
        cached = out / name / "result.json"
        model, tok = _train_one(name, cfg, log)
        _prior_one(name, model, cfg, log)
        if cached.exists() and json.loads(cached.read_text()).get("model_id") == tok.model_id:
            res = json.loads(cached.read_text())
        else:
            res = _measure(name, model, tok, cfg, lp, log)
            cached.write_text(json.dumps(res, indent=1))
        results.append(res)
    doc = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
           "results": results}
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=1))
    return doc


def ablation_table(doc: dict) -> str:
    """The ablation's results as a Markdown table (docs/QUANTIZERS.md)."""
    lines = ["| quantizer | bits | params | bpp (coded) | raw bpp | PSNR (dB) | MS-SSIM | LPIPS | "
             "perplexity | codes used | sub-codebooks used |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["results"]:
        m, u = r["mean"], r["usage"]
        subs = [f"{k}: {100 * v['used']:.0f} %" for k, v in u.items() if isinstance(v, dict)]
        lines.append(f"| {r['quantizer']} | {r['config']['bits']} | {r['params'] / 1e6:.2f} M | {m['bpp']:.4f} | "
                     f"{r['raw_bpp']:.4f} | {m['psnr']:.2f} | "
                     f"{m.get('ms_ssim', float('nan')):.4f} | {m['lpips']:.4f} | {u['perplexity']:.0f} | "
                     f"{100 * u['used']:.1f} % | {', '.join(subs) or '—'} |")
    return "\n".join(lines)
