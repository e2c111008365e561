"""Training of the token prior (``vtok train-prior``) on the tokens of a tokenizer.

Tokens come from the training-clip cache (``codec.training.data.build_cache``): every cached segment is cut into GOPs of
``gop`` frames, as the codec codes them, and tokenized once (kept in ``<run>/tokens-<family id>-gop<gop>.npz``). The prior is
trained on random crops of random latent frames (with the previous latent frame of the same GOP as context, none for
a GOP's first), with binary cross-entropy (= rate in bits), quantization-aware, and with random bit prefixes (the
rate ladder codes only the first ``k`` bits of every token) when the tokenizer was trained for them. A quantizer's
``group_bits`` (LFQ's sub-tokens, FQ's branches, GSQ's groups) sets the prior's bit groups. The result is frozen to its integer form.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from vtok.codec.training.data import build_cache
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.prior import IntegerPrior, PriorConfig, TokenPrior
from vtok.codec.models.zoo import load_tokenizer
from vtok.codec.training.toolkit import MetricsLog, cosine_lr, load_checkpoint, save_checkpoint, set_lr


def tokenize_cache(tok, cache_dir, gop: int = 17, max_clips: int = 0, log=print,
                   hold: float = 0.0) -> list[np.ndarray]:
    """Every cached segment cut into ``gop``-frame GOPs and tokenized: a list of int64 ``(T', H', W')``.

    ``max_clips`` > 0 takes that many clips, evenly spread over the cache (a quicker, smaller training set).
    ``hold``: the encoder's temporal hold (``VideoTokenizer.encode``), so that the tokens are the ones coded.
    """
    index = list(json.loads((Path(cache_dir) / "index.json").read_text()).values())
    if 0 < max_clips < len(index):
        index = [index[i] for i in np.linspace(0, len(index) - 1, max_clips).round().astype(int)]
    out = []
    dtype = np.int32 if tok.bits <= 31 else np.int64
    for n, v in enumerate(index):
        arr = np.load(Path(cache_dir) / v["file"], mmap_mode="r")
        for seg in arr:
            for s in range(0, max(1, seg.shape[0] - gop + 1), gop - 1):  # a short segment: one shorter GOP
                out.append(tok.encode(np.ascontiguousarray(seg[s:s + gop]), hold=hold).astype(dtype))
        if (n + 1) % 20 == 0:
            log(f"tokenized {n + 1}/{len(index)} clips ({len(out)} GOPs)")
    return out


def _batch(gops, rng, batch: int, crop: int, bits: int, nested: float, min_bits: int):
    """One training batch: random crops of random latent frames with their previous latent frame as context."""
    cur, prev, has_prev, keep = [], [], [], []
    for _ in range(batch):
        g = gops[rng.integers(len(gops))]
        t = int(rng.integers(g.shape[0]))
        h, w = g.shape[1:]
        ch, cw = min(crop, h), min(crop, w)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        cur.append(g[t, y:y + ch, x:x + cw])
        prev.append(g[t - 1, y:y + ch, x:x + cw] if t else np.zeros((ch, cw), g.dtype))
        has_prev.append(t > 0)
        keep.append(int(rng.integers(min_bits, bits + 1)) if rng.random() < nested else bits)
    shapes = {c.shape for c in cur}
    if len(shapes) > 1:  # clips smaller than the crop: train on their common size
        mh, mw = min(s[0] for s in shapes), min(s[1] for s in shapes)
        cur, prev = [c[:mh, :mw] for c in cur], [p[:mh, :mw] for p in prev]
    return (torch.from_numpy(np.stack(cur)).long(), torch.from_numpy(np.stack(prev)).long(), torch.tensor(has_prev),
            torch.tensor(keep))


@torch.no_grad()
def held_out_rate(prior: TokenPrior, gops: list[np.ndarray]) -> float:
    """Bits per coded bit of whole held-out GOPs (all bits, every latent frame, the first without context)."""
    total = count = 0.0
    for g in gops:
        t = torch.from_numpy(g).long()
        prev = torch.cat([torch.zeros_like(t[:1]), t[:-1]])
        has_prev = torch.arange(len(t)) > 0
        n = t.numel() * prior.cfg.bits
        total += float(prior.loss(t, prev, has_prev)) * n
        count += n
    return total / max(count, 1)


def widened(prior: TokenPrior, bits: int) -> TokenPrior:
    """``prior`` made to code ``bits``-bit tokens whose first bits are its own (refinement bits after them,
    ``quantizers/rlfq.py``): its weights for the bits it knows, zero for the new inputs and outputs. It codes the
    first bits as before (the new bits are unknown, 0, when they are coded) and the refinement bits at one bit each
    (probability 1/2) until trained."""
    old = prior.cfg
    cfg = dataclasses.replace(old, bits=bits)
    net = TokenPrior(cfg)
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    w = state["convs.0.weight"]
    d, n = old.bits, bits
    w0 = torch.zeros(w.shape[0], cfg.in_channels, *w.shape[2:])
    w0[:, :d] = w[:, :d]  # the previous latent frame's bits
    w0[:, n:n + d] = w[:, d:2 * d]  # the current frame's bits known so far
    w0[:, 2 * n:2 * n + 3] = w[:, 2 * d:2 * d + 3]  # has-previous and the two passes
    first = 2 * n + 3
    for g in range(cfg.groups):  # a new group starts from the old last group's one-hot weights
        w0[:, first + g] = w[:, 2 * d + 3 + min(g, old.groups - 1)]
    state["convs.0.weight"] = w0
    out_w, out_b = state["out.weight"], state["out.bias"]
    state["out.weight"] = torch.cat([out_w, out_w.new_zeros((n - d,) + out_w.shape[1:])])
    state["out.bias"] = torch.cat([out_b, out_b.new_zeros(n - d)])
    net.load_state_dict(state)
    return net


def load_token_gops(tok, cache, run: Path, gop: int, max_clips: int, log, hold: float = 0.0) -> list[np.ndarray]:
    """The cache's tokens in ``gop``-frame GOPs, tokenized once and kept in ``run`` (keyed by family, GOP, hold)."""
    token_file = run / (f"tokens-{tok.family_id}-gop{gop}" + (f"-hold{hold:g}" if hold else "") + ".npz")
    if token_file.exists():
        with np.load(token_file) as z:
            return [z[k] for k in sorted(z.files, key=int)]
    gops = tokenize_cache(tok, cache, gop=gop, max_clips=max_clips, log=log, hold=hold)
    tmp = token_file.with_name(token_file.stem + ".tmp.npz")
    np.savez(tmp, **{str(i): g for i, g in enumerate(gops)})
    tmp.replace(token_file)
    return gops


def train_prior(model=None, out="runs/prior/prior.safetensors", data=(str(TRAIN_DATA),), cache_dir="",
                run_dir="runs/prior", steps: int = 3000, batch: int = 16, crop: int = 32, lr: float = 2e-3,
                channels: int = 48, layers: int = 3, nested: float = 0.5, min_bits: int = 2, threads: int = 0,
                max_clips: int = 0, gop: int = DEFAULT_GOP, init_prior: str = "", save_every: int = 0,
                resume: bool = False, held_out: int = 0, group_bits: int = 0, hold: float | None = None,
                log=print) -> Path:
    """Train, freeze and save a prior for the tokenizer ``model`` (None: the bundled one). Returns ``out``.

    ``init_prior``: start from a frozen prior (its network; ``channels``/``layers`` are then its own).
    ``save_every`` > 0: every so many steps the frozen prior is written to ``out`` and the float state to
    ``<run>/prior-state.safetensors``, which ``resume`` continues from. ``held_out`` > 0: every ``held_out``-th GOP
    is kept out of training and its rate is logged at each save (``held_out_bits_per_bit`` in ``metrics.jsonl``).
    ``group_bits`` > 0: the prior's bit groups (default: the quantizer's); an ``init_prior`` of other groups is
    regrouped (``TokenPrior.regrouped``), one of a tokenizer's base bits widened (``widened``). ``hold``: the
    temporal hold the tokens are made with, as the codec codes them (None: the model's own,
    ``VideoTokenizer.own_hold``; 0: none).
    """
    if threads:
        torch.set_num_threads(threads)
    tok = load_tokenizer(model)
    run = Path(run_dir)
    gops, valid = training_gops(tok, run, Path(cache_dir or run / "cache"), data, gop, max_clips, held_out,
                                tok.own_hold(hold), log)
    if not (tok.quantizer.nested and tok.cfg.nested_dropout > 0):
        nested = 0.0  # the tokenizer decodes whole tokens only: no bit prefixes to code
    prior = starting_prior(tok, init_prior, group_bits, channels, layers)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    state_file, first, metrics, out = run / "prior-state.safetensors", 0, MetricsLog(run / "metrics.jsonl"), Path(out)
    if resume and state_file.exists():
        first, _ = load_checkpoint(state_file, {"prior": prior}, {"opt": opt})
        log(f"resumed at step {first}")
    rng = np.random.default_rng([0, first])  # a resumed run draws new batches, not the first ones again
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int, write: bool = True) -> None:  # the prior, the run's state and the held-out rate
        if write:
            prior.freeze().save(out)
            save_checkpoint(state_file, step, {"prior": prior}, {"opt": opt})
        if valid:
            rate = held_out_rate(prior, valid)
            metrics.write(step=step, held_out_bits_per_bit=rate)
            log(f"prior step {step}: {rate:.4f} bits per coded bit on {len(valid)} held-out GOPs")

    if first == 0:
        save(0, write=False)  # the starting point's held-out rate, to compare each save with
    ema_loss = None
    for step in range(first, steps):
        set_lr(opt, cosine_lr(step, steps, lr))
        loss = _step(prior, opt, _batch(gops, rng, batch, crop, tok.bits, nested, min_bits))
        ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
        if (step + 1) % 50 == 0 or step + 1 == steps:
            elapsed = time.time() - metrics.t0
            metrics.write(step=step + 1, bits_per_bit=ema_loss, lr=cosine_lr(step, steps, lr), time=elapsed)
            log(f"prior step {step + 1}/{steps}: {ema_loss:.4f} bits per coded bit, {elapsed:.0f} s")
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            save(step + 1)
    save(steps)
    metrics.close()
    log(f"integer prior {IntegerPrior.load(out).model_id} written to {out}")
    return out


def _step(prior: TokenPrior, opt: torch.optim.Optimizer, batch) -> float:
    """One optimizer step of the prior on a batch (``_batch``); returns its loss in bits per coded bit."""
    loss = prior.loss(*batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
    opt.step()
    return loss.item()


def training_gops(tok, run: Path, cache: Path, data, gop: int, max_clips: int, held_out: int, hold: float,
                  log) -> tuple[list, list]:
    """The token GOPs to train on and those held out (every ``held_out``-th; none for 0), from the clip cache
    (built first if it is not there)."""
    run.mkdir(parents=True, exist_ok=True)
    if not (cache / "index.json").exists():
        build_cache(list(data), cache, log=log)
    gops = load_token_gops(tok, cache, run, gop, max_clips, log, hold)
    valid = gops[::held_out] if held_out > 0 else []
    if held_out > 0:
        gops = [g for i, g in enumerate(gops) if i % held_out]
    if not gops:
        raise ValueError(f"no training clips in {cache}")
    log(f"{len(gops)} GOPs of tokens for training, {len(valid)} held out")
    return gops, valid


def starting_prior(tok, init_prior: str, group_bits: int, channels: int, layers: int) -> TokenPrior:
    """The float prior a run starts from: ``init_prior`` (regrouped to ``group_bits``, widened to refinement bits)
    or a fresh one of ``channels`` × ``layers``; ``group_bits`` 0: the tokenizer's."""
    group = group_bits or tok.group_bits
    if not 1 <= group <= tok.bits:
        raise ValueError(f"`group_bits` must be in 1..{tok.bits}, got {group}")
    if not init_prior:
        return TokenPrior(PriorConfig(bits=tok.bits, group_bits=group, channels=channels, layers=layers))
    prior = TokenPrior.from_integer(IntegerPrior.load(init_prior))
    if prior.cfg.bits == tok.base_bits < tok.bits:
        prior = widened(prior, tok.bits)
    if prior.cfg.bits != tok.bits:
        raise ValueError(f"{init_prior} codes {prior.cfg.bits}-bit tokens, the tokenizer makes {tok.bits}-bit tokens")
    return prior.regrouped(group) if prior.cfg.group_bits != group else prior
