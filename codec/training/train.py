"""Training loop of the tokenizer: one CPU process, or many under ``torchrun`` (DDP; gloo on CPU, nccl on GPU).

The recipe follows MAGVIT-v2 (arXiv 2310.05737) scaled down for small machines: image pre-training (``frames=1``,
which trains the first-frame path of the causal network) and then *inflation* to video (``inflate_from_image``),
random crops, Adam with linear warm-up and cosine decay, an EMA of the weights (what gets exported), gradient
clipping, bf16 autocast on GPU, and the LFQ entropy penalty annealed from 3x to 1x over the first 2k steps (not when
fine-tuning trained weights, whose EMA also keeps its full decay from the first step).

Everything is resumable: ``<run>/state.safetensors`` holds model, EMA, optimizer and discriminator tensors plus the
step (safetensors only, no pickle); ``<run>/metrics.jsonl`` logs losses; ``<run>/ema.safetensors`` is the exported
model (fp16), loadable by ``codec.load_tokenizer``. The loop reads top to bottom: ``setup`` (the model from
``start.py``, optimizers, EMA, the run's state), ``train_step`` (one batch: losses, the adversarial and rate terms,
the EMA) and ``save``; schedule, EMA and checkpoints come from ``toolkit.py``, shared with the other loops.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import save_tokenizer
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.prior import TokenPrior
from vtok.codec.training.data import ClipSampler, build_cache
from vtok.codec.training.losses import LeCAM, PatchDiscriminator, TokenizerLoss, frames_of, hinge_d_loss
from vtok.codec.training.start import initial_model, param_groups, start_prior
from vtok.codec.training.toolkit import (MetricsLog, cosine_lr, ema_update, load_checkpoint, save_checkpoint,
                                         set_lr)


@dataclass
class TrainConfig:
    """Settings of one training run (stored with its checkpoints)."""

    run_dir: str = "runs/tokenizer"
    data: list = field(default_factory=lambda: [str(TRAIN_DATA)])
    cache_dir: str = ""  # default: <run_dir>/cache
    cache_short_side: int = 288
    steps: int = 20000
    batch: int = 4
    frames: int = 9
    crop: int = 128
    lr: float = 4e-4
    warmup: int = 500
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.999
    l1_weight: float = 1.0
    lpips_weight: float = 0.1
    lpips_frames: int = 4
    entropy_anneal_steps: int = 2000
    adv_weight: float = 0.0
    adv_start: int = 5000
    lecam_weight: float = 0.001
    max_source_share: float = 0.1
    init: str = ""  # safetensors tokenizer to start from
    inflate: bool = False  # the init model was image-trained: inflate its temporal kernels
    dec_blocks: int = -1  # with init: grow the decoder to this many refine blocks (-1: as the init model has)
    freeze_encoder: bool = False  # train the decoder only: the tokens, and so the token prior, stay what they are
    refine_bits: int = 0  # with init: grow this many refinement bits onto its sign bits (``training/refine.py``)
    enhance: bool = False  # with init: a decoder start of their own for refinement bits (``refine.with_enhancement``)
    enhance_base: str = ""  # with enhance: the sign-bit model whose decoder it grows on (default: the init's own)
    refine_only: bool = False  # train the refinement bits' decoder branch only: every sign-bit prefix decodes as before
    new_lr_mult: float = 10.0  # learning-rate factor of the parts that start at zero (a grown refinement branch)
    stem_head: str = ""  # arch "tae", no init: the distilled stem and head (``vtok distill``) to start from
    taef2: str = ""  # arch "tae", no init: folder of TAEF2's weights (default ../shared/weights/taef2)
    rate_weight: float = 0.0  # lambda of D + lambda * R, R in bits per pixel from the token prior (0: no rate term)
    prior_init: str = ""  # with rate_weight: the integer prior to start from (default: the one beside --init)
    prior_lr: float = 5e-4
    log_every: int = 10
    save_every_s: float = 300.0
    seed: int = 0
    threads: int = 0
    progress: bool = True


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The run's learning rate at ``step``: warm-up, then a cosine to ``min_lr_ratio`` of ``lr``."""
    return cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup, cfg.min_lr_ratio)


def run_training(arch: str = "magvit", quantizer: str = "lfq", bits: int = 18, group_bits: int = 0, stem_ch: int = 32,
                 ch: int = 128, nested_dropout: float | None = None, quantizer_arg=(), resume: bool = False,
                 quiet: bool = False, log=print, **train_settings) -> Path:
    """``vtok train``: the tokenizer's architecture from its arguments (``quantizer_arg``: ``KEY=VALUE`` texts;
    ``nested_dropout`` None: 0.5 for quantizers with ordered bits, else 0), ``TrainConfig`` from the rest."""
    from vtok.codec.models.quantizers import QUANTIZERS

    if quantizer not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {quantizer!r} ({', '.join(sorted(QUANTIZERS))})")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    tcfg = TrainConfig(**{k: v for k, v in train_settings.items() if k in fields}, progress=not quiet)
    if not tcfg.init:
        tcfg.dec_blocks = -1
    nested = nested_dropout if nested_dropout is not None else 0.5 if QUANTIZERS[quantizer].nested else 0.0
    mcfg = TokenizerConfig(arch=arch, quantizer=quantizer, bits=bits, group_bits=group_bits, stem_ch=stem_ch, ch=ch,
                           dec_blocks=max(0, train_settings.get("dec_blocks", -1)), nested_dropout=nested,
                           quantizer_args=dict(map(_key_value, quantizer_arg)))
    return train(tcfg, mcfg, resume=resume, log=log)


def _key_value(item: str) -> tuple:
    """A ``--quantizer-arg``: ``KEY=VALUE``, the value JSON when it reads as JSON (``3``, ``true``), else the word."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


@dataclass
class Run:
    """The moving parts of one training run (``setup``), advanced by ``train_step`` and written by ``save``."""

    tcfg: TrainConfig
    dir: Path
    model: VideoTokenizer
    ema: VideoTokenizer
    opt: torch.optim.Optimizer
    net: nn.Module  # the model, wrapped for DDP when several processes train
    loss_fn: TokenizerLoss
    rank: int = 0
    world: int = 1
    step: int = 0
    warm: bool = False  # fine-tuning trained weights: full EMA decay and no raised entropy penalty from the start
    disc: nn.Module | None = None
    dopt: torch.optim.Optimizer | None = None
    lecam: LeCAM | None = None
    prior: TokenPrior | None = None
    popt: torch.optim.Optimizer | None = None
    extra: dict = field(default_factory=dict)  # metadata the exported weights carry

    @property
    def state_path(self) -> Path:
        return self.dir / "state.safetensors"

    def parts(self) -> tuple[dict, dict]:
        """The checkpoint's modules and optimizers by name (``toolkit.save_checkpoint``)."""
        disc = self.disc.module if hasattr(self.disc, "module") else self.disc
        return ({"model": self.model, "ema": self.ema, "disc": disc, "prior": self.prior},
                {"opt": self.opt, "dopt": self.dopt, "popt": self.popt})


def setup(tcfg: TrainConfig, mcfg: TokenizerConfig | None, resume: bool, log) -> Run:
    """Processes, the training cache, the model (``start.initial_model``), its EMA, optimizers, the discriminator
    and the prior when asked for, and the run's state when it resumes."""
    rank, world, device = _setup_distributed()
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed + rank)
    run = Path(tcfg.run_dir)
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
    cache = Path(tcfg.cache_dir or run / "cache")

    def cached() -> Path:  # built once, when first needed: a bad configuration fails before this work
        if rank == 0 and not (cache / "index.json").exists():
            log(f"building training cache in {cache} from {', '.join(map(str, tcfg.data))}")
            build_cache(tcfg.data, cache, short_side=tcfg.cache_short_side, log=log)
        if dist.is_initialized():
            dist.barrier()
        return cache

    state_path = run / "state.safetensors"
    model = initial_model(tcfg, mcfg, state_path if resume else None, cached).to(device).train()
    cached()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if tcfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    if tcfg.refine_only:
        if not model.refine_bits:
            raise ValueError("`refine_only` trains the branch that reads refinement bits: the model has none")
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(("decoder.enhance.", "decoder.residual.")))
    opt = torch.optim.Adam(param_groups(model, tcfg.new_lr_mult), lr=tcfg.lr, betas=(0.9, 0.99),
                           weight_decay=tcfg.weight_decay)
    net: nn.Module = model
    if dist.is_initialized():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # the init model's own rate ladder and hold (measured for it) and the family it grew from go with the export
    extra = {k: model.meta[k] for k in ("rate_ladder", "hold", "base_family", "base_codec", "default_rate")
             if k in model.meta}
    r = Run(tcfg, run, model, ema, opt, net, TokenizerLoss(tcfg.l1_weight, tcfg.lpips_weight, tcfg.lpips_frames)
            .to(device), rank, world, warm=bool(tcfg.init) and not tcfg.inflate, extra=extra)
    if tcfg.adv_weight > 0:
        r.disc, r.lecam = PatchDiscriminator().to(device), LeCAM()
        r.dopt = torch.optim.Adam(r.disc.parameters(), lr=tcfg.lr, betas=(0.5, 0.99))
    if tcfg.rate_weight > 0:
        if model.cfg.quantizer != "lfq":
            raise ValueError(f"the rate term needs binary tokens (lfq), not {model.cfg.quantizer!r}")
        r.prior = start_prior(model, tcfg).to(device).train()
        r.popt = torch.optim.Adam(r.prior.parameters(), lr=tcfg.prior_lr)
    if resume and state_path.exists():
        r.step, _ = load_checkpoint(state_path, *r.parts())
        log(f"resumed {state_path} at step {r.step}")
    elif resume:
        log(f"nothing to resume in {run}: starting at step 0")
    if r.disc is not None and dist.is_initialized():
        r.disc = nn.parallel.DistributedDataParallel(r.disc, device_ids=[device.index] if device.type == "cuda"
                                                     else None)
    if rank == 0:
        (run / "train_config.json").write_text(json.dumps(dataclasses.asdict(tcfg), indent=1))
    return r


def train_step(r: Run, x: torch.Tensor) -> dict:
    """One batch: the reconstruction (with nested dropout), its losses, the adversarial and rate terms when on, the
    optimizer steps and the EMA. Returns the logged numbers (losses, PSNR, learning rate, gradient norm)."""
    tcfg, model = r.tcfg, r.model
    lr = lr_at(r.step, tcfg)
    set_lr(r.opt, lr)
    # refine_only: the sign bits alone decode as before, so every sample keeps some refinement bits
    keep = (torch.randint(model.base_bits + 1, model.bits + 1, (x.shape[0],), device=x.device) if tcfg.refine_only
            else model.sample_keep_bits(x.shape[0], x.device))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if x.device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)
    with autocast:
        y, qout = r.net(x, keep)
    # the LFQ entropy penalty starts at 3x and anneals to 1x (not when fine-tuning: its codes are already spread)
    anneal = 1.0 if r.warm else 1.0 + 2.0 * max(0.0, 1.0 - r.step / max(1, tcfg.entropy_anneal_steps))
    qlosses = {k: (v * anneal if k == "entropy" else v) for k, v in qout.losses.items()}
    y = y.float()
    total, parts = r.loss_fn(x, y, qlosses)
    adv_on = r.disc is not None and r.step >= tcfg.adv_start
    if adv_on:
        g_loss = -r.disc(frames_of(y, tcfg.lpips_frames)).mean()
        total = total + tcfg.adv_weight * g_loss
        parts["gen"] = float(g_loss.detach())
    if r.prior is not None:
        # Rate of the straight-through codes under the prior, in bits per pixel of the clip: the prior learns
        # to predict the bits, the encoder to make them predictable where the picture allows it.
        bpp = r.prior.video_rate(qout.codes.float(), keep).sum() / (x.shape[0] * x[0, 0].numel())
        total = total + tcfg.rate_weight * bpp
        parts["bpp"] = float(bpp.detach())
        r.popt.zero_grad(set_to_none=True)
    r.opt.zero_grad(set_to_none=True)
    total.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
    r.opt.step()
    if r.prior is not None:
        set_lr(r.popt, tcfg.prior_lr * lr / tcfg.lr)
        torch.nn.utils.clip_grad_norm_(r.prior.parameters(), 1.0)
        r.popt.step()
    if adv_on:
        real, fake = frames_of(torch.cat([x, y.detach()]), tcfg.lpips_frames).chunk(2)
        r_logits, f_logits = r.disc(real), r.disc(fake)
        d_loss = hinge_d_loss(r_logits, f_logits) + tcfg.lecam_weight * r.lecam.penalty(r_logits, f_logits)
        r.lecam.update(r_logits, f_logits)
        r.dopt.zero_grad(set_to_none=True)
        d_loss.backward()
        r.dopt.step()
        parts["disc"] = float(d_loss.detach())
    ema_update(r.ema, model, tcfg.ema if r.warm else min(tcfg.ema, (1 + r.step) / (10 + r.step)))
    r.step += 1
    with torch.no_grad():
        psnr = float(10 * torch.log10(4.0 / ((x - y.clamp(-1, 1)) ** 2).mean().clamp_min(1e-10)))
    return {**parts, "loss": total.item(), "psnr": psnr, "lr": lr, "grad_norm": float(gnorm)}


def save(r: Run) -> None:
    """The run's state (``state.safetensors``) and its export: ``ema.safetensors`` (fp16) and, when a prior trains
    along, its frozen integer form beside it (``ema-prior.safetensors``)."""
    save_checkpoint(r.state_path, r.step, *r.parts(), meta={"config": r.model.cfg.to_json()})
    save_tokenizer(r.ema, r.dir / "ema.safetensors", extra={"step": r.step, **r.extra})
    if r.prior is not None:
        r.prior.freeze().save(r.dir / "ema-prior.safetensors")


def train(tcfg: TrainConfig, mcfg: TokenizerConfig | None = None, resume: bool = False, log=print) -> Path:
    """Run (or continue, with ``resume``) a training run; returns the path of the exported EMA weights."""
    r = setup(tcfg, mcfg, resume, log)
    device = next(r.model.parameters()).device
    sampler = ClipSampler(Path(tcfg.cache_dir or r.dir / "cache"), tcfg.frames, tcfg.crop,
                          tcfg.max_source_share, seed=tcfg.seed * 1000 + r.rank + r.step)
    bar = None
    if r.rank == 0 and tcfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=tcfg.steps, initial=r.step, unit="step", dynamic_ncols=True)
    metrics = MetricsLog(r.dir / "metrics.jsonl" if r.rank == 0 else None)
    last_save, t0, clips_done = time.time(), time.time(), 0
    while r.step < tcfg.steps:
        parts = train_step(r, sampler.sample(tcfg.batch).to(device, non_blocking=True))
        clips_done += tcfg.batch * r.world
        if r.rank:
            continue
        rate = clips_done / max(1e-9, time.time() - t0)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.3f}", psnr=f"{parts['psnr']:.1f}", clips_s=f"{rate:.2f}")
        if r.step % tcfg.log_every == 0 or r.step == tcfg.steps:
            metrics.write(step=r.step, time=time.time(), clips_per_s=rate, **parts)
        if time.time() - last_save > tcfg.save_every_s or r.step == tcfg.steps:
            save(r)
            last_save = time.time()
    if bar is not None:
        bar.close()
    metrics.close()
    if r.rank == 0 and not (r.dir / "ema.safetensors").exists():
        save(r)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return r.dir / "ema.safetensors"
