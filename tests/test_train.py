"""Training: a tiny clip overfits, train() runs/resumes/inflates, adversarial steps, and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vtok.codec.training.data import ClipSampler, build_cache, source_capped_weights
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer
from vtok.codec.training.start import inflate_from_image
from vtok.codec.training.train import TrainConfig, lr_at, train
from vtok.codec.media.write import write_video
from tests.conftest import SHARED, smooth_clip, tiny_config

LPIPS_WEIGHT = 0.1 if (SHARED / "weights" / "lpips" / "alexnet_features.safetensors").exists() else 0.0


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "srcA__one.mkv", smooth_clip(12, 48, 64, seed=1), 25)
    write_video(d / "srcB__two.mkv", smooth_clip(12, 40, 56, seed=2), 25)
    return d


def test_tiny_clip_overfits():
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config(nested_dropout=0.0)).train()
    x = torch.from_numpy(smooth_clip(5, 32, 32)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        y, out = tok(x)
        loss = (x - y).abs().mean() + sum(out.losses.values())
        rec = (x - y).abs().mean().item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(rec)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:3])


def test_cache_and_sampler(video_dir, tmp_path):
    cache = build_cache([video_dir], tmp_path / "cache", segments=2, segment_frames=9, short_side=32, log=lambda *a: None)
    index = json.loads((cache / "index.json").read_text())
    assert len(index) == 2 and {v["source"] for v in index.values()} == {"srcA", "srcB"}
    s = ClipSampler(cache, frames=5, crop=24, seed=0)
    x = s.sample(3)
    assert x.shape == (3, 3, 5, 24, 24) and x.min() >= -1 and x.max() <= 1


def test_source_cap():
    w = source_capped_weights(["a"] * 8 + ["b", "c"], max_share=0.4)
    share = {s: w[[i for i, x in enumerate(["a"] * 8 + ["b", "c"]) if x == s]].sum() for s in "abc"}
    assert share["a"] == pytest.approx(0.4) and share["b"] == pytest.approx(0.3) and share["c"] == pytest.approx(0.3)
    # A cap below 1/sources is relaxed to 1/sources.
    w2 = source_capped_weights(["a", "a", "b"], max_share=0.1)
    assert w2[:2].sum() == pytest.approx(0.5)


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(110, cfg) == pytest.approx(0.1)


def _cfg(run, video_dir, **kw):
    base = dict(run_dir=str(run), data=[str(video_dir)], cache_short_side=40, steps=3, batch=2, frames=5, crop=32,
                lpips_weight=LPIPS_WEIGHT, warmup=2, progress=False, save_every_s=0.0, log_every=1)
    base.update(kw)
    return TrainConfig(**base)


def test_train_resume_and_export(video_dir, tmp_path):
    run = tmp_path / "run"
    out = train(_cfg(run, video_dir), tiny_config(), log=lambda *a: None)
    assert out.exists() and (run / "state.safetensors").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in rows)
    train(_cfg(run, video_dir, steps=5), tiny_config(), resume=True, log=lambda *a: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    tok = load_tokenizer(out)
    assert tok.encode(smooth_clip(5, 16, 16)).shape == (2, 2, 2)


def test_adversarial_steps(video_dir, tmp_path):
    run = tmp_path / "adv"
    train(_cfg(run, video_dir, adv_weight=0.1, adv_start=1, lpips_weight=0.0), tiny_config(), log=lambda *a: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "gen" not in rows[0] and "disc" in rows[-1] and np.isfinite(rows[-1]["disc"])


def test_inflation_keeps_image_behaviour(tmp_path):
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config()).eval()
    img = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    with torch.inference_mode():
        before = tok.decoder(tok.quantizer(tok.encoder(img)).codes)
    inflate_from_image(tok)
    static = img.expand(-1, -1, 9, -1, -1)
    with torch.inference_mode():
        z_img = tok.encoder(img)
        z_vid = tok.encoder(static)
        after = tok.decoder(tok.quantizer(z_img).codes)
        dec = tok.decoder(tok.quantizer(z_vid).codes)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    # A static clip encodes every latent frame like the image and decodes every frame like it.
    torch.testing.assert_close(z_vid, z_img.expand_as(z_vid), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dec, before.expand_as(dec), atol=1e-4, rtol=1e-4)


def test_ddp_two_processes(video_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vtok", "train", "--data", str(video_dir), "--run-dir", str(run), "--steps", "2", "--batch", "1",
           "--frames", "5", "--crop", "24", "--stem-ch", "8", "--ch", "16", "--bits", "10", "--lpips-weight", "0",
           "--quiet", "--threads", "1", "--save-every", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2
    assert load_tokenizer(run / "ema.safetensors").bits == 10


def test_fine_tuning_keeps_the_start_in_the_ema(video_dir, tmp_path):
    """With --init, the exported EMA after a few steps is still close to the start: full decay from step 0."""
    from safetensors.torch import load_file

    start = tmp_path / "start"
    train(_cfg(start, video_dir, steps=1), tiny_config(), log=lambda *a: None)
    run = tmp_path / "tune"
    out = train(_cfg(run, video_dir, steps=2, lr=1e-2, init=str(start / "ema.safetensors"), ema=0.99),
                log=lambda *a: None)
    before, after = load_file(start / "ema.safetensors"), load_file(out)
    state = load_file(run / "state.safetensors")
    moved = [(after[k].float() - before[k].float()).abs().max() for k in before if before[k].is_floating_point()]
    raw = [(state[f"model.{k}"].float() - before[k].float()).abs().max() for k in before
           if before[k].is_floating_point() and f"model.{k}" in state]
    assert raw and max(raw) > 0  # the trained weights did move
    # After two steps at decay 0.99 the EMA holds at most 2 % of the moves (fp16 export rounding aside).
    assert max(moved) <= 0.03 * max(raw) + 2e-3


def test_fine_tuning_takes_new_quantizer_loss_weights(video_dir, tmp_path):
    """``vtok train --init … --quantizer-arg entropy_weight=0 --ema 0.5``: the loaded model's quantizer trains with
    the new loss weight (recorded in the exported config), the EMA decay reaches the run; an argument that would
    change the architecture is refused."""
    from vtok.codec.training.train import run_training

    start = tmp_path / "start"
    train(_cfg(start, video_dir, steps=1), tiny_config(), log=lambda *a: None)
    assert load_tokenizer(start / "ema.safetensors").quantizer.entropy_weight > 0
    kw = {k: v for k, v in vars(_cfg(tmp_path / "tune", video_dir, steps=1)).items() if k != "progress"}
    out = run_training(**{**kw, "init": str(start / "ema.safetensors"), "ema": 0.5},
                       quantizer_arg=["entropy_weight=0"], log=lambda *a: None)
    tuned = load_tokenizer(out)
    assert tuned.quantizer.entropy_weight == 0.0 and tuned.cfg.quantizer_args["entropy_weight"] == 0.0
    assert json.loads((tmp_path / "tune" / "train_config.json").read_text())["ema"] == 0.5
    with pytest.raises(ValueError, match="only the quantizer's loss weights"):
        run_training(**{**kw, "init": str(start / "ema.safetensors")}, quantizer_arg=["bits=4"], log=lambda *a: None)


def test_decoder_only_training_keeps_the_tokens(video_dir, tmp_path):
    """--freeze-encoder with --dec-blocks: the decoder grows and trains, the encoder (so every token) stays."""
    from safetensors.torch import load_file

    from vtok.codec.models.config import TokenizerConfig
    from vtok.codec.models.zoo import save_tokenizer

    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(TokenizerConfig(arch="tae", bits=12, group_bits=6)), tmp_path / "start.safetensors")
    run = tmp_path / "dec"
    out = train(_cfg(run, video_dir, steps=2, lr=1e-2, init=str(tmp_path / "start.safetensors"), dec_blocks=2,
                     freeze_encoder=True), log=lambda *a: None)
    start, state = load_file(tmp_path / "start.safetensors"), load_file(run / "state.safetensors")
    enc = [k for k in start if k.startswith("encoder.")]
    assert enc and all(torch.equal(state[f"model.{k}"].half(), start[k]) for k in enc)
    assert any(state[f"model.decoder.{k}"].abs().max() > 0 for k in ("refine.0.conv.4.weight", "refine.1.conv.4.weight"))
    assert any(not torch.equal(state[f"model.{k}"].half(), start[k]) for k in start if k.startswith("decoder."))
    before, after = load_tokenizer(tmp_path / "start.safetensors"), load_tokenizer(out)
    assert after.cfg.dec_blocks == 2
    clip = smooth_clip(5, 16, 24)
    np.testing.assert_array_equal(after.encode(clip), before.encode(clip))


def test_rate_term_trains_the_prior_with_the_tokenizer(video_dir, tmp_path):
    """--rate-weight: the loss logs the prior's bits per pixel, the state holds the prior, the exported prior is the
    frozen integer form of it and codes the exported tokenizer's tokens; a resume continues the same prior."""
    from safetensors.torch import load_file

    from vtok.codec.loading import load_codec

    run = tmp_path / "rate"
    out = train(_cfg(run, video_dir, rate_weight=1.0, prior_lr=1e-2), tiny_config(), log=lambda *a: None)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["bpp"] > 0 and np.isfinite(r["bpp"]) for r in rows)
    state = load_file(run / "state.safetensors")
    assert any(k.startswith("prior.") for k in state) and any(k.startswith("popt.") for k in state)
    codec = load_codec(out)  # finds ema-prior.safetensors beside the weights
    clip = smooth_clip(5, 16, 24)
    assert codec.decompress(codec.compress(clip)).shape == clip.shape
    first = state["prior.out.weight"]
    train(_cfg(run, video_dir, steps=5, rate_weight=1.0, prior_lr=1e-2), tiny_config(), resume=True,
          log=lambda *a: None)
    assert not torch.equal(load_file(run / "state.safetensors")["prior.out.weight"], first)


def test_rate_term_lowers_the_rate():
    """A few steps on the rate alone make the tokens of a clip cheaper under a fixed prior (the gradient reaches the
    encoder through the straight-through bits)."""
    from vtok.codec.prior import PriorConfig, TokenPrior

    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config(nested_dropout=0.0)).train()
    prior = TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=1)).requires_grad_(False)
    x = torch.from_numpy(smooth_clip(5, 32, 32)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    opt = torch.optim.Adam(tok.encoder.parameters(), lr=1e-2)
    rates = []
    for _ in range(30):
        _, out = tok(x)
        rate = prior.video_rate(out.codes).sum()
        opt.zero_grad()
        rate.backward()
        opt.step()
        rates.append(rate.item())
    assert rates[-1] < 0.9 * rates[0]


def test_train_prior_holds_out_resumes_and_starts_from_a_prior(video_dir, tmp_path):
    """``vtok train-prior``: tokens cut into GOPs of ``gop`` frames, a held-out share measured at the start and at
    every save, a run that resumes where its state stopped, a warm start from a frozen prior that (at lr 0)
    freezes back to the same integers, and one regrouped to smaller bit groups."""
    from vtok.codec.models.zoo import save_tokenizer
    from vtok.codec.prior import IntegerPrior
    from vtok.codec.training.train_prior import train_prior

    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), tmp_path / "tiny.safetensors")
    lines = []
    kw = dict(data=[str(video_dir)], cache_dir=str(tmp_path / "cache"), run_dir=str(tmp_path / "run"), batch=2,
              crop=4, channels=8, layers=1, gop=9, save_every=2, held_out=2, threads=1, log=lines.append)
    out = train_prior(tmp_path / "tiny.safetensors", tmp_path / "p.safetensors", steps=4, **kw)
    assert list((tmp_path / "run").glob("tokens-*-gop9.npz"))
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    held = [r for r in rows if "held_out_bits_per_bit" in r]
    assert [r["step"] for r in held] == [0, 2, 4] and all(0 < r["held_out_bits_per_bit"] < 2 for r in held)
    train_prior(tmp_path / "tiny.safetensors", tmp_path / "p.safetensors", steps=6, resume=True, **kw)
    assert "resumed at step 4" in lines
    first = IntegerPrior.load(out)
    assert first.cfg.channels == 8 and first.cfg.layers == 1
    kw.update(run_dir=str(tmp_path / "run2"), channels=48, layers=3)  # the init prior's own shape wins
    again = train_prior(tmp_path / "tiny.safetensors", tmp_path / "q.safetensors", steps=1, lr=0.0,
                        init_prior=str(out), **kw)
    assert IntegerPrior.load(again).model_id == IntegerPrior.load(out).model_id
    fine = train_prior(tmp_path / "tiny.safetensors", tmp_path / "g.safetensors", steps=1, init_prior=str(out),
                       group_bits=2, **kw)  # regrouped: 2-bit steps from the 5-bit prior
    assert IntegerPrior.load(fine).cfg.group_bits == 2 and IntegerPrior.load(out).cfg.group_bits == 5
    with pytest.raises(ValueError, match="`group_bits` must be in"):
        train_prior(tmp_path / "tiny.safetensors", tmp_path / "h.safetensors", steps=1, group_bits=11, **kw)


def test_train_prior_fits_the_tokens_the_models_hold_makes(video_dir, tmp_path):
    """``vtok train-prior`` tokenizes with the model's own temporal hold (weights metadata ``hold``) unless told
    otherwise, so that the prior is fitted to the tokens the codec codes; held and plain tokens are kept apart."""
    from vtok.codec.models.zoo import load_tokenizer, save_tokenizer
    from vtok.codec.training.train_prior import load_token_gops, train_prior

    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), tmp_path / "tiny.safetensors", extra={"hold": 0.5})
    tok = load_tokenizer(tmp_path / "tiny.safetensors")
    run = tmp_path / "run"
    kw = dict(data=[str(video_dir)], cache_dir=str(tmp_path / "cache"), run_dir=str(run), batch=2, crop=4,
              channels=8, layers=1, gop=9, threads=1, log=lambda *_: None)
    train_prior(tmp_path / "tiny.safetensors", tmp_path / "p.safetensors", steps=1, **kw)
    assert [p.name for p in run.glob("tokens-*.npz")] == [f"tokens-{tok.family_id}-gop9-hold0.5.npz"]
    train_prior(tmp_path / "tiny.safetensors", tmp_path / "q.safetensors", steps=1, hold=0.0, **kw)
    held = load_token_gops(tok, tmp_path / "cache", run, 9, 0, print, 0.5)
    plain = load_token_gops(tok, tmp_path / "cache", run, 9, 0, print, 0.0)
    assert len(list(run.glob("tokens-*.npz"))) == 2 and len(held) == len(plain)
    assert not all(np.array_equal(h, p) for h, p in zip(held, plain))  # the hold changed some bits
    assert all(np.array_equal(h[0], p[0]) for h, p in zip(held, plain))  # a GOP's first latent frame is not held
    first = next(iter(json.loads((tmp_path / "cache" / "index.json").read_text()).values()))["file"]
    segment = np.load(tmp_path / "cache" / first, mmap_mode="r")[0][:9]
    assert np.array_equal(held[0], tok.encode(np.ascontiguousarray(segment), hold=0.5))
