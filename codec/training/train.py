"""Training loop of the tokenizer: one CPU process, or many under ``torchrun`` (DDP; gloo on CPU, nccl on GPU).

The recipe follows MAGVIT-v2 (arXiv 2310.05737) scaled down for small machines: image pre-training (``frames=1``,
which trains the first-frame path of the causal network) and then *inflation* to video (``inflate_from_image``),
random crops, Adam with linear warm-up and cosine decay, an EMA of the weights (what gets exported), gradient
clipping, bf16 autocast on GPU, and the LFQ entropy penalty annealed from 3x to 1x over the first 2k steps (not when
fine-tuning trained weights, whose EMA also keeps its full decay from the first step).

Everything is resumable: ``<run>/state.safetensors`` holds model, EMA, optimizer and discriminator tensors plus the
step (safetensors only, no pickle); ``<run>/metrics.jsonl`` logs losses; ``<run>/ema.safetensors`` is the exported
model (fp16), loadable by ``codec.load_tokenizer``. One module, one loop: checkpointing, EMA and the adversarial
step are parts of the loop a reader follows top to bottom.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from vtok.codec.training.data import ClipSampler, build_cache
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.prior import IntegerPrior, PriorConfig, TokenPrior
from vtok.codec.training.losses import LeCAM, PatchDiscriminator, TokenizerLoss, frames_of, hinge_d_loss
from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer, prior_path, save_tokenizer
from vtok.codec.training.optim_state import flat_optimizer_state, load_optimizer_state


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


def inflate_from_image(model: VideoTokenizer) -> None:
    """Turn an image-trained (one-frame) tokenizer into a video tokenizer that starts as a frame-wise one.

    A one-frame clip sees every temporal tap of a causal kernel applied to the same (replicated) frame, so only their
    sum was learned: that sum moves to the last tap (the current frame), the others start at zero (MAGVIT-v2's
    inflation). Temporal depth-to-space layers only trained the half of their channels that makes the kept frame; the
    other half is copied from it, so a latent frame first decodes to repeated frames.
    """
    from vtok.codec.models.layers import CausalConv3d

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, CausalConv3d) and m.kernel[0] > 1:
                w = m.conv.weight
                s = w.sum(2)
                w.zero_()
                w[:, :, -1] = s
        for up in (model.decoder.up_t1, model.decoder.up_t2):
            w, b = up.conv.weight, up.conv.bias
            c = w.shape[0] // 2
            w[:c] = w[c:]
            b[:c] = b[c:]


def start_from_taef2(model: VideoTokenizer, taef2=None, stem_head=None) -> None:
    """A fresh ``arch="tae"`` tokenizer: TAEF2's 1/4 and 1/8 stages, and the distilled stem and head if given."""
    from vtok.codec.training.distill import load_stem_head
    from vtok.codec.models.tae import init_from_taef2

    init_from_taef2(model.encoder, model.decoder, taef2)
    if stem_head:
        stem, head = load_stem_head(stem_head)
        model.encoder.stem.load_state_dict(stem, strict=True)
        model.decoder.head.load_state_dict(head, strict=True)


def grow_decoder(model: VideoTokenizer, blocks: int) -> VideoTokenizer:
    """The same tokenizer with ``blocks`` refine blocks in its decoder; the new ones start as the identity."""
    if blocks == model.cfg.dec_blocks:
        return model
    if blocks < model.cfg.dec_blocks:
        raise ValueError(f"the model has {model.cfg.dec_blocks} decoder refine blocks; cannot shrink to {blocks}")
    grown = VideoTokenizer(dataclasses.replace(model.cfg, dec_blocks=blocks))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("decoder.refine.") for k in missing):
        raise ValueError(f"weights do not fit the grown decoder: {(unexpected + missing)[:5]}")
    return grown.train(model.training)


def start_prior(model: VideoTokenizer, tcfg: TrainConfig) -> TokenPrior:
    """The float token prior trained with the tokenizer (``rate_weight``): from ``prior_init``, else from the prior
    beside ``init``; a fresh one (4 layers × 96 channels) when there is neither."""
    path = tcfg.prior_init
    if not path and tcfg.init:
        beside = prior_path(tcfg.init)
        path = str(beside) if beside.is_file() else ""
    if path:
        prior = TokenPrior.from_integer(IntegerPrior.load(path))
        if prior.cfg.bits != model.bits:
            raise ValueError(f"prior {path} codes {prior.cfg.bits}-bit tokens, the tokenizer makes {model.bits}")
        return prior
    group = model.group_bits
    return TokenPrior(PriorConfig(bits=model.bits, group_bits=group, channels=96, layers=4))


def export(run: Path, ema: VideoTokenizer, step: int, prior: TokenPrior | None, extra: dict) -> None:
    """``<run>/ema.safetensors`` (fp16) and, when a prior trains along, its frozen integer form beside it."""
    save_tokenizer(ema, run / "ema.safetensors", extra={"step": step, **extra})
    if prior is not None:
        prior.freeze().save(run / "ema-prior.safetensors")


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def save_state(path: Path, step: int, model, ema, opt, disc=None, dopt=None, extra: dict | None = None,
               prior=None, popt=None) -> None:
    from safetensors.torch import save_file

    t = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    t.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    t.update(flat_optimizer_state(opt, "opt"))
    if disc is not None:
        t.update({f"disc.{k}": v.detach().cpu().contiguous() for k, v in disc.state_dict().items()})
        t.update(flat_optimizer_state(dopt, "dopt"))
    if prior is not None:
        t.update({f"prior.{k}": v.detach().cpu().contiguous() for k, v in prior.state_dict().items()})
        t.update(flat_optimizer_state(popt, "popt"))
    meta = {"step": str(step), "config": model.cfg.to_json()}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    tmp = path.with_suffix(".tmp")
    save_file(t, str(tmp), metadata=meta)
    tmp.replace(path)


def load_state(path: Path, model, ema, opt, disc=None, dopt=None, prior=None, popt=None) -> tuple[int, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    ema.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")}, strict=True)
    load_optimizer_state(opt, t, "opt")
    if disc is not None and any(k.startswith("disc.") for k in t):
        disc.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("disc.")}, strict=True)
        load_optimizer_state(dopt, t, "dopt")
    if prior is not None and any(k.startswith("prior.") for k in t):
        prior.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("prior.")}, strict=True)
        load_optimizer_state(popt, t, "popt")
    return int(meta["step"]), meta


def refined(model: VideoTokenizer, tcfg: TrainConfig, state_path: Path | None, cache: Path) -> VideoTokenizer:
    """The init model with ``tcfg.refine_bits`` refinement bits: as the run's checkpoint has them when it resumes
    (its stored config), else measured on 32 training clips."""
    from vtok.codec.training.refine import with_refinement

    if state_path is not None and state_path.exists():
        from safetensors import safe_open

        with safe_open(str(state_path), framework="pt") as f:
            cfg = TokenizerConfig.from_json(f.metadata()["config"])
        grown = VideoTokenizer(cfg)
        grown.meta = {**model.meta, "base_family": model.family_id}
        return grown.train()
    sampler = ClipSampler(cache, tcfg.frames, tcfg.crop, tcfg.max_source_share, seed=12345)
    return with_refinement(model, tcfg.refine_bits, (sampler.sample(4) for _ in range(8)))


def param_groups(model: nn.Module, tcfg: TrainConfig) -> list[dict]:
    """The trainable parameters, those of a grown refinement branch (``decoder.residual``) in a group of their own
    with ``new_lr_mult`` times the learning rate."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    new = [p for n, p in named if n.startswith("decoder.residual.")]
    groups = [{"params": [p for n, p in named if not n.startswith("decoder.residual.")]}]
    return groups + ([{"params": new, "mult": tcfg.new_lr_mult}] if new else [])


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


def reweigh_quantizer(model: VideoTokenizer, args: dict) -> None:
    """``--quantizer-arg`` with ``--init``: the loaded model's quantizer takes new loss weights (``*_weight``), recorded
    in its config; any other argument would change what the weights mean, so it is refused."""
    for key, value in args.items():
        if not key.endswith("_weight") or not hasattr(model.quantizer, key):
            raise ValueError(f"`quantizer_arg` {key}: with `init` only the quantizer's loss weights can change "
                             f"({', '.join(k for k in vars(model.quantizer) if k.endswith('_weight')) or 'none'})")
        setattr(model.quantizer, key, float(value))
        model.cfg.quantizer_args = {**model.cfg.quantizer_args, key: float(value)}


def train(tcfg: TrainConfig, mcfg: TokenizerConfig | None = None, resume: bool = False, log=print) -> Path:
    """Run (or continue, with ``resume``) a training run; returns the path of the exported EMA weights."""
    rank, world, device = _setup_distributed()
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    torch.manual_seed(tcfg.seed + rank)
    run = Path(tcfg.run_dir)
    state_path = run / "state.safetensors"
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
    cache = Path(tcfg.cache_dir or run / "cache")
    if rank == 0 and not (cache / "index.json").exists():
        log(f"building training cache in {cache} from {', '.join(map(str, tcfg.data))}")
        build_cache(tcfg.data, cache, short_side=tcfg.cache_short_side, log=log)
    if dist.is_initialized():
        dist.barrier()
    if tcfg.init:
        model = load_tokenizer(tcfg.init).train()
        if model.decode_only:
            raise ValueError(f"`init={tcfg.init}`: these weights decode only (no encoder); start from a full model")
        if tcfg.inflate:
            inflate_from_image(model)
        if tcfg.dec_blocks >= 0:
            model = grow_decoder(model, tcfg.dec_blocks)
        if mcfg is not None and mcfg.quantizer_args:
            reweigh_quantizer(model, mcfg.quantizer_args)
        if tcfg.refine_bits:
            model = refined(model, tcfg, state_path if resume else None, cache)
    else:
        model = VideoTokenizer(mcfg or TokenizerConfig())  # a bad configuration fails here, before any work
        if model.cfg.arch == "tae" and not (resume and state_path.exists()):
            start_from_taef2(model, tcfg.taef2 or None, tcfg.stem_head or None)

    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if tcfg.freeze_encoder:
        model.encoder.requires_grad_(False)
    opt = torch.optim.Adam(param_groups(model, tcfg), lr=tcfg.lr, betas=(0.9, 0.99), weight_decay=tcfg.weight_decay)
    disc = dopt = None
    lecam = LeCAM()
    if tcfg.adv_weight > 0:
        disc = PatchDiscriminator().to(device)
        dopt = torch.optim.Adam(disc.parameters(), lr=tcfg.lr, betas=(0.5, 0.99))
    prior = popt = None
    if tcfg.rate_weight > 0:
        if model.cfg.quantizer != "lfq":
            raise ValueError(f"the rate term needs binary tokens (lfq), not {model.cfg.quantizer!r}")
        prior = start_prior(model, tcfg).to(device).train()
        popt = torch.optim.Adam(prior.parameters(), lr=tcfg.prior_lr)
    step = 0
    if resume and state_path.exists():
        step, _ = load_state(state_path, model, ema, opt, disc, dopt, prior, popt)
        log(f"resumed {state_path} at step {step}")
    elif resume:
        log(f"nothing to resume in {run}: starting at step 0")
    # Fine-tuning trained weights (--init) is not a fresh start: the EMA keeps its full decay from the first step, so
    # that the exported model moves away from the start only as the new optimizer settles, and the entropy penalty
    # is not raised again (its early 3x is for codes that are not yet spread).
    warm = bool(tcfg.init) and not tcfg.inflate
    # the init model's own rate ladder and hold (measured for it) and the family it grew from go with the export
    extra = {k: model.meta[k] for k in ("rate_ladder", "hold", "base_family") if k in model.meta}
    if rank == 0:
        (run / "train_config.json").write_text(json.dumps(dataclasses.asdict(tcfg), indent=1))

    net: nn.Module = model
    if dist.is_initialized():
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if disc is not None:
            disc = nn.parallel.DistributedDataParallel(disc, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = TokenizerLoss(tcfg.l1_weight, tcfg.lpips_weight, tcfg.lpips_frames).to(device)
    sampler = ClipSampler(cache, tcfg.frames, tcfg.crop, tcfg.max_source_share, seed=tcfg.seed * 1000 + rank + step)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    bar = None
    if rank == 0 and tcfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=tcfg.steps, initial=step, unit="step", dynamic_ncols=True)
    metrics = open(run / "metrics.jsonl", "a") if rank == 0 else None
    last_save = time.time()
    t0, clips_done = time.time(), 0
    while step < tcfg.steps:
        x = sampler.sample(tcfg.batch).to(device, non_blocking=True)
        lr = lr_at(step, tcfg)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("mult", 1.0)
        keep = model.sample_keep_bits(x.shape[0], device)
        with autocast:
            y, qout = net(x, keep)
        anneal = 1.0 if warm else 1.0 + 2.0 * max(0.0, 1.0 - step / max(1, tcfg.entropy_anneal_steps))
        qlosses = {k: (v * anneal if k == "entropy" else v) for k, v in qout.losses.items()}
        y = y.float()
        total, parts = loss_fn(x, y, qlosses)
        adv_on = disc is not None and step >= tcfg.adv_start
        if adv_on:
            g_logits = disc(frames_of(y, tcfg.lpips_frames))
            g_loss = -g_logits.mean()
            total = total + tcfg.adv_weight * g_loss
            parts["gen"] = float(g_loss.detach())
        if prior is not None:
            # Rate of the straight-through codes under the prior, in bits per pixel of the clip: the prior learns
            # to predict the bits, the encoder to make them predictable where the picture allows it.
            bpp = prior.video_rate(qout.codes.float(), keep).sum() / (x.shape[0] * x[0, 0].numel())
            total = total + tcfg.rate_weight * bpp
            parts["bpp"] = float(bpp.detach())
            popt.zero_grad(set_to_none=True)
        opt.zero_grad(set_to_none=True)
        total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
        opt.step()
        if prior is not None:
            for g in popt.param_groups:
                g["lr"] = tcfg.prior_lr * lr / tcfg.lr
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            popt.step()
        if adv_on:
            real, fake = frames_of(torch.cat([x, y.detach()]), tcfg.lpips_frames).chunk(2)
            r_logits, f_logits = disc(real), disc(fake)
            d_loss = hinge_d_loss(r_logits, f_logits) + tcfg.lecam_weight * lecam.penalty(r_logits, f_logits)
            lecam.update(r_logits, f_logits)
            dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            dopt.step()
            parts["disc"] = float(d_loss.detach())
        decay = tcfg.ema if warm else min(tcfg.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm.detach(), 1 - decay)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        step += 1
        clips_done += tcfg.batch * world
        if rank == 0:
            with torch.no_grad():
                psnr = float(10 * torch.log10(4.0 / ((x - y.clamp(-1, 1)) ** 2).mean().clamp_min(1e-10)))
            parts.update(loss=total.item(), psnr=psnr, lr=lr, grad_norm=float(gnorm))
            rate = clips_done / max(1e-9, time.time() - t0)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", psnr=f"{psnr:.1f}", clips_s=f"{rate:.2f}")
            if step % tcfg.log_every == 0 or step == tcfg.steps:
                metrics.write(json.dumps({"step": step, "time": time.time(), "clips_per_s": rate, **parts}) + "\n")
                metrics.flush()
            if time.time() - last_save > tcfg.save_every_s or step == tcfg.steps:
                save_state(state_path, step, model, ema, opt, disc.module if hasattr(disc, "module") else disc, dopt,
                           prior=prior, popt=popt)
                export(run, ema, step, prior, extra)
                last_save = time.time()
    if bar is not None:
        bar.close()
    if metrics is not None:
        metrics.close()
    if rank == 0 and not (run / "ema.safetensors").exists():
        export(run, ema, step, prior, extra)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return run / "ema.safetensors"
