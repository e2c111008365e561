"""Training of the token prior (``vtok train-prior``) on the tokens of a tokenizer.

Tokens come from the training-clip cache (``codec.training.data.build_cache``): every cached segment is cut into GOPs of
``gop`` frames, as the codec codes them, and tokenized once (kept in ``<run>/tokens-<model id>.npz``). The prior is
trained on random crops of random latent frames (with the previous latent frame of the same GOP as context, none for
a GOP's first), with binary cross-entropy (= rate in bits), quantization-aware, and with random bit prefixes (the
rate ladder codes only the first ``k`` bits of every token) when the tokenizer was trained for them. A quantizer's
``group_bits`` (LFQ's sub-tokens, FQ's branches, GSQ's groups) sets the prior's bit groups. The result is frozen to its integer form.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vtok.codec.training.data import build_cache
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec.models.tokenizer import load_tokenizer


def tokenize_cache(tok, cache_dir, gop: int = 17, max_clips: int = 0, log=print) -> list[np.ndarray]:
    """Every cached segment cut into ``gop``-frame GOPs and tokenized: a list of int64 ``(T', H', W')``.

    ``max_clips`` > 0 takes that many clips, evenly spread over the cache (a quicker, smaller training set).
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
                out.append(tok.encode(np.ascontiguousarray(seg[s:s + gop])).astype(dtype))
        if (n + 1) % 20 == 0:
            log(f"tokenized {n + 1}/{len(index)} clips ({len(out)} GOPs)")
    return out


def train_prior(model=None, out="runs/prior/prior.safetensors", data=(str(TRAIN_DATA),), cache_dir="",
                run_dir="runs/prior", steps: int = 3000, batch: int = 16, crop: int = 32, lr: float = 2e-3,
                channels: int = 48, layers: int = 3, nested: float = 0.5, min_bits: int = 2, threads: int = 0,
                max_clips: int = 0, log=print) -> Path:
    """Train, freeze and save a prior for the tokenizer ``model`` (None: the bundled one). Returns ``out``."""
    if threads:
        torch.set_num_threads(threads)
    tok = load_tokenizer(model)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir or run / "cache")
    if not (cache / "index.json").exists():
        build_cache(list(data), cache, log=log)
    token_file = run / f"tokens-{tok.family_id}.npz"
    if token_file.exists():
        with np.load(token_file) as z:
            gops = [z[k] for k in sorted(z.files, key=int)]
    else:
        gops = tokenize_cache(tok, cache, max_clips=max_clips, log=log)
        np.savez(token_file, **{str(i): g for i, g in enumerate(gops)})
    if not gops:
        raise ValueError(f"no training clips in {cache}")
    log(f"{len(gops)} GOPs of tokens for training")
    group = getattr(tok.quantizer, "group_bits", tok.bits)
    if not (tok.quantizer.nested and tok.cfg.nested_dropout > 0):
        nested = 0.0  # the tokenizer decodes whole tokens only: no bit prefixes to code
    cfg = PriorConfig(bits=tok.bits, group_bits=group, channels=channels, layers=layers)
    prior = TokenPrior(cfg)
    opt = torch.optim.Adam(prior.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    t0 = time.time()
    log_rows = open(run / "metrics.jsonl", "a")
    ema_loss = None
    for step in range(steps):
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
            keep.append(int(rng.integers(min_bits, tok.bits + 1)) if rng.random() < nested else tok.bits)
        shapes = {c.shape for c in cur}
        if len(shapes) > 1:  # clips smaller than the crop: train on their common size
            mh, mw = min(s[0] for s in shapes), min(s[1] for s in shapes)
            cur, prev = [c[:mh, :mw] for c in cur], [p[:mh, :mw] for p in prev]
        lr_now = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        for gparam in opt.param_groups:
            gparam["lr"] = lr_now
        loss = prior.loss(torch.from_numpy(np.stack(cur)).long(), torch.from_numpy(np.stack(prev)).long(),
                          torch.tensor(has_prev), torch.tensor(keep))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        value = loss.item()
        ema_loss = value if ema_loss is None else 0.98 * ema_loss + 0.02 * value
        if (step + 1) % 50 == 0 or step + 1 == steps:
            row = {"step": step + 1, "bits_per_bit": ema_loss, "lr": lr_now, "time": time.time() - t0}
            log_rows.write(json.dumps(row) + "\n")
            log_rows.flush()
            log(f"prior step {step + 1}/{steps}: {ema_loss:.4f} bits per coded bit, {time.time() - t0:.0f} s")
    log_rows.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frozen = prior.freeze()
    frozen.save(out)
    log(f"integer prior {frozen.model_id} written to {out}")
    return out
