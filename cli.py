"""vtok command line: argument parsing only, one function call per subcommand.

Run ``vtok --help`` (or ``python cli.py --help``). Exit codes: 0 success; 1 an error the user can act on (bad or
damaged input, a missing file or folder, a model that does not fit, a failing external encoder), reported as one
``vtok: error: ...`` line; 2 an internal error (a bug), also one line (``VTOK_DEBUG=1`` shows the traceback);
130 interrupted. One parser (its length is the CLI's surface) and one dispatch with one error boundary.
"""

from __future__ import annotations

import argparse
import os
import sys

from vtok.bitstream.errors import VtokError
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.models.quantizers import QUANTIZERS


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x360, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _list(text: str, kind) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list, got {text!r}") from None


def _ladder(text: str) -> list[tuple[int, float]]:
    """``"51@0.5,47@0.25"`` → ``[(51, 0.5), (47, 0.25)]``."""
    out = []
    for item in _list(text, str):
        qp, sep, scale = item.partition("@")
        try:
            out.append((int(qp), float(scale)))
        except ValueError:
            raise ValueError(f"expected QP@SCALE, e.g. 51@0.5, got {item!r}") from None
        if not sep or not 0 < out[-1][1] < 1:
            raise ValueError(f"the scale of {item!r} must be between 0 and 1")
    return out


def _key_values(items: list[str]) -> dict:
    """``["k=v", ...]`` with JSON values (a bare word is taken as a string) → dict."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vtok", description="vtok: a causal 3D-CNN video tokenizer and neural codec")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="video file -> .vtok bitstream")
    p.add_argument("input", nargs="+", help="anything PyAV opens, a .y4m, or raw .yuv with --size and --fps; - reads "
                   "stdin; several files or folders: one .vtok each into the folder -o")
    p.add_argument("-o", "--output", required=True, help=".vtok file; - writes it to stdout; a folder for several")
    p.add_argument("--skip-existing", action="store_true", help="several inputs: skip outputs already complete")
    p.add_argument("--model", help="tokenizer weights (.safetensors); default: the bundled model")
    p.add_argument("--prior", help="token prior weights; default: <model>-prior.safetensors beside the model")
    p.add_argument("--gop", type=int, help="frames per independently decodable unit, 1+4k (default 65: fewer "
                   "bits; a shorter GOP seeks faster)")
    p.add_argument("--rate", type=int, help="a point of the model's rate ladder: 0 = smallest file, larger = more bits and a "
                   "better picture (default model: 0..6 = 1/4 size with 14 and 36 bits per token, then the full size "
                   "with 5, 8, 14, 22, 36 bits)")
    p.add_argument("--bits", type=int, help="code only the first N bits of every token (coarser, smaller)")
    p.add_argument("--frames", type=int, help="compress only the first N frames")
    p.add_argument("--size", type=_size, help="frame size of a raw .yuv input")
    p.add_argument("--fps", help="frame rate of a raw .yuv input")
    p.add_argument("--no-audio", action="store_true", help="leave the input's audio out (kept by default)")
    p.add_argument("--workers", type=int, default=0, help="GOPs coded in N processes (0: half the CPUs, at least 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the summary as JSON")

    p = sub.add_parser("decompress", help=".vtok -> video (.y4m, .mkv lossless FFV1, .mp4 H.264, or PNG folder)")
    p.add_argument("input", nargs="+", help=".vtok file; - reads it from stdin; several files or folders: one video "
                   "each into the folder -o")
    p.add_argument("-o", "--output", required=True, help="output video; - writes Y4M to stdout; a folder for several")
    p.add_argument("--skip-existing", action="store_true", help="several inputs: skip outputs already there")
    p.add_argument("--format", default="mkv", choices=["mkv", "mp4", "y4m"], help="several inputs: output type")
    p.add_argument("--model")
    p.add_argument("--prior")
    p.add_argument("--start", type=int, default=0, help="first frame to decode")
    p.add_argument("--workers", type=int, default=0, help="GOPs decoded in N processes (0: half the CPUs, at least 1)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse files whose frames are larger than this "
                   "(default 37748736: 8K with room to spare)")
    p.add_argument("--frames", type=int, help="number of frames to decode")
    p.add_argument("--no-audio", action="store_true", help="write no audio (by default the file's audio is muxed "
                   "into .mkv/.mp4 outputs)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the summary as JSON")

    p = sub.add_parser("info", help="header, GOPs, sizes and rates of a .vtok file")
    p.add_argument("input")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("tokenize", help="video file -> token indices (.npz) for language-model use")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", help="tokenizer weights (.safetensors); default: the bundled model")
    p.add_argument("--bits", type=int, help="keep the first N bits of every token (rate ladder)")
    p.add_argument("--frames", type=int, help="tokenize only the first N frames")
    p.add_argument("--resize", type=_size, help="resize frames to WxH first (bicubic)")
    p.add_argument("--size", type=_size, help="frame size of a raw .yuv input")
    p.add_argument("--fps", help="frame rate of a raw .yuv input")

    p = sub.add_parser("detokenize", help="token indices (.npz) -> video (.mkv lossless, .mp4, .y4m or PNG folder)")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--model", help="tokenizer weights (.safetensors); default: the bundled model")

    p = sub.add_parser("train", help="train a tokenizer (resumable; torchrun for several processes)")
    p.add_argument("--data", nargs="+", default=[str(TRAIN_DATA)], help="video files or folders")
    p.add_argument("--run-dir", default="runs/tokenizer", help="run folder (checkpoints, metrics.jsonl, ema.safetensors)")
    p.add_argument("--cache", default="", help="preprocessed clip cache (default: <run>/cache)")
    p.add_argument("--resume", action="store_true", help="continue from <run>/state.safetensors")
    p.add_argument("--init", default="", help="start from these tokenizer weights")
    p.add_argument("--inflate", action="store_true", help="--init is image-trained: inflate it to video")
    p.add_argument("--dec-blocks", type=int, default=-1, help="--arch tae: extra residual blocks at the start of "
                   "the decoder (with --init: added to the init model, starting as the identity)")
    p.add_argument("--freeze-encoder", action="store_true", help="train the decoder only (the tokens and the "
                   "token prior stay valid)")
    p.add_argument("--arch", default="magvit", choices=["magvit", "tae"],
                   help="magvit (from scratch) or tae (starts from TAEF2's weights; see docs/MODELS.md)")
    p.add_argument("--stem-head", default="", help="--arch tae: the stem and head made by 'vtok distill'")
    p.add_argument("--taef2", default="", help="--arch tae: TAEF2's weights folder (default ../shared/weights/taef2)")
    p.add_argument("--quantizer", default="lfq", choices=sorted(QUANTIZERS),
                   help="lfq (default), vq, fq (FQGAN), gsq or regvq; see docs/QUANTIZERS.md")
    p.add_argument("--quantizer-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a quantizer argument (VALUE read as JSON, else as a string), e.g. metric=cosine, "
                   "branches=3; repeatable")
    p.add_argument("--bits", type=int, default=18)
    p.add_argument("--group-bits", type=int, default=0, help="LFQ sub-token size (0: the largest divisor of --bits "
                   "up to 12)")
    p.add_argument("--stem-ch", type=int, default=32)
    p.add_argument("--ch", type=int, default=128)
    p.add_argument("--nested-dropout", type=float, help="share of samples trained on a bit prefix (default: 0.5 "
                   "for lfq, 0 for the others, whose index bits are not ordered)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=9, help="frames per clip, 1+4k (1 = image pre-training)")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--lpips-weight", type=float, default=0.1)
    p.add_argument("--adv-weight", type=float, default=0.0, help="adversarial loss weight (0: off)")
    p.add_argument("--adv-start", type=int, default=5000, help="step at which the adversarial loss starts")
    p.add_argument("--rate-weight", type=float, default=0.0, help="train D + λ·R: R = the token prior's bits per "
                   "pixel, the prior trained along (0: no rate term)")
    p.add_argument("--prior-init", default="", help="with --rate-weight: the prior to start from (default: the one "
                   "beside --init)")
    p.add_argument("--prior-lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--save-every", type=float, default=300.0, help="seconds between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("distill", help="--arch tae, stage 1: distil the cheap stem and head from TAEF2 (resumable)")
    p.add_argument("--data", nargs="+", default=[str(TRAIN_DATA)], help="video files or folders")
    p.add_argument("--run-dir", default="runs/tae", help="run folder (writes stem-head.safetensors)")
    p.add_argument("--cache", default="", help="preprocessed clip cache (default: <run>/cache)")
    p.add_argument("--taef2", default=None, help="TAEF2's weights folder (default ../shared/weights/taef2)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--lr", type=float, default=1e-3)

    p = sub.add_parser("train-prior", help="train the token prior on a tokenizer's tokens")
    p.add_argument("--model", help="tokenizer weights; default: the bundled model")
    p.add_argument("-o", "--output", default="runs/prior/prior.safetensors")
    p.add_argument("--data", nargs="+", default=[str(TRAIN_DATA)])
    p.add_argument("--cache", default="")
    p.add_argument("--run-dir", default="runs/prior")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=32, help="crop of the token grid")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--channels", type=int, default=48)
    p.add_argument("--layers", type=int, default=3, help="3x3 convolutions of the prior's network")
    p.add_argument("--max-clips", type=int, default=0, help="tokenize only this many cached clips, spread over the cache (0: all)")
    p.add_argument("--threads", type=int, default=0)

    p = sub.add_parser("eval", help="reconstruction quality of a tokenizer on evaluation clips")
    p.add_argument("--model")
    p.add_argument("--data", nargs="+", help="video files or folders (default: ../shared/datasets/eval)")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--size", type=_size, default=(640, 360))
    p.add_argument("--bits", type=int)
    p.add_argument("--json", help="also write the results to this JSON file")

    p = sub.add_parser("bench", help="rate-distortion benchmark against x265 and VVC (or: bench speed | codec)")
    p.add_argument("--data", nargs="+", help="video files or folders (default: ../shared/datasets/eval)")
    p.add_argument("--mcl-jcv", help="folder with the MCL-JCV sequences (videoSRC*_1920x1080_*.yuv)")
    p.add_argument("--codecs", default="vtok,x265,vvc", help="codecs to compare; vtok:MODEL adds a vtok model as a "
                   "peer (e.g. vtok:default,vtok:runs/dec/ema.safetensors)")
    p.add_argument("--gop", type=int, help="vtok's GOP length (default: the codec's)")
    p.add_argument("--reuse", help="an earlier results.json (same clips, frames, size): its codecs that this run "
                   "does not code are taken from it")
    p.add_argument("--rename", default="", help="with --reuse: rename its codecs, OLD=NEW[,OLD=NEW]")
    p.add_argument("--qps", default="22,27,32,37,42,47", help="anchor QP ladder")
    p.add_argument("--anchor-ladder", default="", help="extra anchor points at a reduced size, QP@SCALE, e.g. "
                   "51@0.5,51@0.25 (coded smaller, scaled back up for the metrics)")
    p.add_argument("--vtok-rates", default="all", help="vtok rate points (comma-separated; all: the whole ladder)")
    p.add_argument("--frames", type=int, default=33, help="frames per clip (0: all)")
    p.add_argument("--size", type=_size, default=(640, 360))
    p.add_argument("--keep-size", action="store_true", help="no resizing (e.g. MCL-JCV at 1080p)")
    p.add_argument("--config", default="low-delay", choices=["low-delay", "random-access"])
    p.add_argument("--preset", default="medium")
    p.add_argument("--intra-period", type=int, help="frames between intra frames (default: one per clip)")
    p.add_argument("--model", help="vtok tokenizer weights (default: bundled)")
    p.add_argument("--anchor", default="x265", help="BD-rates are against this codec")
    p.add_argument("--jobs", type=int, default=1, help="anchor encodes in parallel")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--no-lpips", action="store_true")
    p.add_argument("--quiet", action="store_true")
    bsub = p.add_subparsers(dest="bench", required=False)
    s = bsub.add_parser("speed", help="tokenizer encode/decode frames per second")
    s.add_argument("--model")
    s.add_argument("--frames", type=int, default=33)
    s.add_argument("--size", default="640x360")
    s.add_argument("--repeats", type=int, default=3)

    c = bsub.add_parser("codec", help="bpp, prior saving, coder overhead, fps and peak memory of the codec")
    c.add_argument("--model")
    c.add_argument("--prior")
    c.add_argument("--data", nargs="+")
    c.add_argument("--frames", type=int, default=33)
    c.add_argument("--skip-memory", action="store_true")
    c.add_argument("--json")

    c = bsub.add_parser("ladder", help="compare two ways to get many rates from one model (bits vs. resizing)")
    c.add_argument("--model")
    c.add_argument("--data", nargs="+")
    c.add_argument("--frames", type=int, default=33)
    c.add_argument("--json")

    c = bsub.add_parser("budget", help="loss budget: TAEF2, stem/head, no binarisation, tokens; bit statistics")
    c.add_argument("--model")
    c.add_argument("--data", nargs="+")
    c.add_argument("--frames", type=int, default=9, help="frames per clip of the quality rows")
    c.add_argument("--json")

    c = bsub.add_parser("fuzz", help="fuzz the .vtok readers and decoder with mutants of the seed files")
    c.add_argument("--cases", type=int, default=10000)
    c.add_argument("--seconds", type=float, default=10.0, help="time limit of one case")
    c.add_argument("--out", help="write failing inputs to this folder")

    c = bsub.add_parser("gop", help="rate and quality against GOP length (real .vtok files)")
    c.add_argument("--model")
    c.add_argument("--data", nargs="+")
    c.add_argument("--frames", type=int, default=65)
    c.add_argument("--gops", default="17,33,65", help="GOP lengths (0: the whole clip)")
    c.add_argument("--rates", default="", help="rate points (default: all bits only)")
    c.add_argument("--json")

    c = bsub.add_parser("quantizers", help="ablation: train each quantizer alike, then quality, usage and bpp")
    c.add_argument("--names", default="lfq,vq,fq,gsq,gsq-restart,regvq",
                   help="ablation entries to compare (quantizers; gsq-restart: GSQ with dead-code restart)")
    c.add_argument("--bits", type=int, default=12, help="bits per token of every quantizer")
    c.add_argument("--steps", type=int, default=400, help="training steps of each tokenizer")
    c.add_argument("--prior-steps", type=int, default=300, help="training steps of each token prior")
    c.add_argument("--train-data", nargs="+", default=[str(TRAIN_DATA)])
    c.add_argument("--cache", default="", help="training clip cache (default: <out>/cache)")
    c.add_argument("--data", nargs="+", help="evaluation clips (default: ../shared/datasets/eval)")
    c.add_argument("--frames", type=int, default=17, help="evaluation frames per clip")
    c.add_argument("--out", default="runs/quantizers", help="run folder (resumable)")
    c.add_argument("--json")

    p = sub.add_parser("plot", help="rate-distortion plot of a results.json")
    p.add_argument("results")
    p.add_argument("-o", "--output", default="rd.png")

    p = sub.add_parser("demo", help="tokenize and reconstruct a sample clip with the bundled model")
    p.add_argument("--model")
    p.add_argument("--out", default="out")
    return ap


def _log(a: argparse.Namespace):
    """Where a command's lines go: nowhere with --quiet (like ffmpeg's -loglevel quiet), stderr when the output is
    standard output (``-o -``), else stdout."""
    if getattr(a, "quiet", False):
        return lambda *args: None
    if getattr(a, "output", None) == "-":
        return lambda *args: print(*args, file=sys.stderr)
    return print


def _summary(a: argparse.Namespace, summary: dict) -> None:
    if getattr(a, "verbose", False) and not a.quiet:
        import json
        _log(a)(json.dumps(summary))


# --- one function per subcommand; imports inside, so `vtok --help` stays light ---------------------------------

def _workers(a) -> int:
    """--workers, 0 meaning half the CPUs (at least 1: a process of its own costs a model load and a start-up)."""
    return a.workers if a.workers > 0 else max(1, (os.cpu_count() or 2) // 2)


def _batch(a) -> bool:
    """Several inputs, or a folder: one output each into the folder -o."""
    return len(a.input) > 1 or os.path.isdir(a.input[0])


def _compress(a):
    from vtok.codec.files import compress_file, compress_many
    from vtok.codec.coding import DEFAULT_GOP
    kw = dict(gop=a.gop or DEFAULT_GOP, bits=a.bits, size=a.size, fps=a.fps, max_frames=a.frames, rate=a.rate,
              audio=not a.no_audio, workers=_workers(a))
    if _batch(a):
        return _summary(a, compress_many(a.input, a.output, a.model, a.prior, a.skip_existing, a.quiet, _log(a), **kw))
    _summary(a, compress_file(a.input[0], a.output, a.model, a.prior, quiet=a.quiet, log=_log(a), **kw))


def _decompress(a):
    from vtok.codec.files import decompress_file, decompress_many
    from vtok.codec.coding import DEFAULT_MAX_PIXELS
    kw = dict(start=a.start, frames=a.frames, audio=not a.no_audio, max_pixels=a.max_pixels or DEFAULT_MAX_PIXELS,
              workers=_workers(a))
    if _batch(a):
        return _summary(a, decompress_many(a.input, a.output, a.model, a.prior, "." + a.format, a.skip_existing,
                                           a.quiet, _log(a), **kw))
    _summary(a, decompress_file(a.input[0], a.output, a.model, a.prior, quiet=a.quiet, log=_log(a), **kw))


def _info(a):
    from vtok.bench.report import print_info
    print_info(a.input, a.json)


def _distill(a):
    from vtok.codec.training.distill import distill
    distill(a.run_dir, a.data, a.cache, a.steps, a.batch, a.crop, a.lr, taef2=a.taef2)


def _train_prior(a):
    from vtok.codec.training.train_prior import train_prior
    train_prior(a.model, a.output, a.data, a.cache, a.run_dir, a.steps, a.batch, a.crop, a.lr, a.channels,
                a.layers, threads=a.threads, max_clips=a.max_clips)


def _tokenize(a):
    from vtok.codec.tokens_file import tokenize_file
    tokenize_file(a.input, a.output, a.model, a.bits, a.frames, a.resize, a.size, a.fps)


def _detokenize(a):
    from vtok.codec.tokens_file import detokenize_file
    detokenize_file(a.input, a.output, a.model)


def _train(a):
    from vtok.codec.models.config import TokenizerConfig
    from vtok.codec.training.train import TrainConfig, train
    train(TrainConfig(run_dir=a.run_dir, data=a.data, cache_dir=a.cache, steps=a.steps, batch=a.batch,
                      frames=a.frames, crop=a.crop, lr=a.lr, warmup=a.warmup, lpips_weight=a.lpips_weight,
                      adv_weight=a.adv_weight, adv_start=a.adv_start, init=a.init, inflate=a.inflate,
                      stem_head=a.stem_head, taef2=a.taef2, dec_blocks=a.dec_blocks if a.init else -1,
                      freeze_encoder=a.freeze_encoder, rate_weight=a.rate_weight, prior_init=a.prior_init,
                      prior_lr=a.prior_lr, threads=a.threads, save_every_s=a.save_every, seed=a.seed,
                      progress=not a.quiet),
          TokenizerConfig(arch=a.arch, quantizer=a.quantizer, bits=a.bits, group_bits=a.group_bits,
                          stem_ch=a.stem_ch, ch=a.ch, dec_blocks=max(0, a.dec_blocks),
                          nested_dropout=(a.nested_dropout if a.nested_dropout is not None
                                          else 0.5 if QUANTIZERS[a.quantizer].nested else 0.0),
                          quantizer_args=_key_values(a.quantizer_arg)),
          resume=a.resume)


def _eval(a):
    from vtok.bench.evaluate import run_evaluation
    run_evaluation(a.model, a.data, a.frames, a.size, a.bits, a.json)


def _bench_speed(a):
    from vtok.bench.speed import run_speed
    run_speed(a.model, a.frames, a.size, a.repeats)


def _bench_codec(a):
    from vtok.bench.codec_bench import run_codec_bench
    run_codec_bench(a.model, a.prior, a.data, a.frames, a.skip_memory, a.json)


def _bench_quantizers(a):
    from vtok.bench.quantizers import QuantizerAblation, run_ablation
    run_ablation(QuantizerAblation(names=_list(a.names, str), bits=a.bits, steps=a.steps,
                                   prior_steps=a.prior_steps, train_data=a.train_data, cache=a.cache,
                                   eval_data=a.data, frames_eval=a.frames, out=a.out), json_path=a.json)


def _bench_ladder(a):
    from vtok.bench.ladder import compare_ladders
    compare_ladders(a.model, a.data, a.frames, json_path=a.json)


def _bench_budget(a):
    from vtok.bench.budget import run_budget
    run_budget(a.model, a.data, a.frames, json_path=a.json)


def _bench_fuzz(a):
    from vtok.bench.fuzz import run_fuzz
    if run_fuzz(a.cases, a.seconds, a.out).failures:
        raise RuntimeError("fuzzing found failures (listed above)")


def _bench_gop(a):
    from vtok.bench.gop import run_gop_bench
    run_gop_bench(a.model, a.data, a.frames, gops=_list(a.gops, int),
                  rates=_list(a.rates, int) if a.rates else None, json_path=a.json)


def _bench_rd(a):
    from vtok.bench.rd import run_bench
    run_bench(a.data, a.mcl_jcv, _list(a.codecs, str), _list(a.qps, int),
              None if a.vtok_rates == "all" else _list(a.vtok_rates, int),
              a.frames or None, a.size, a.keep_size, a.out, a.jobs, a.config, a.preset, a.intra_period, a.model,
              a.anchor, lpips=not a.no_lpips, progress=not a.quiet, anchor_ladder=_ladder(a.anchor_ladder),
              reuse=a.reuse, rename=dict(kv.split("=", 1) for kv in _list(a.rename, str)) if a.rename else None,
              **({"gop": a.gop} if a.gop else {}))


def _plot(a):
    from vtok.bench.plot import plot_rd
    print(plot_rd(a.results, a.output))


def _demo(a):
    from vtok.bench.demo import run_demo
    run_demo(a.model, a.out)


COMMANDS = {"compress": _compress, "decompress": _decompress, "info": _info, "distill": _distill,
            "train-prior": _train_prior, "tokenize": _tokenize, "detokenize": _detokenize, "train": _train,
            "eval": _eval, "bench speed": _bench_speed, "bench codec": _bench_codec,
            "bench quantizers": _bench_quantizers, "bench ladder": _bench_ladder,
            "bench budget": _bench_budget, "bench gop": _bench_gop, "bench fuzz": _bench_fuzz, "bench": _bench_rd, "plot": _plot,
            "demo": _demo}


def _run(a: argparse.Namespace) -> None:
    sub = getattr(a, "bench", None) if a.command == "bench" else None
    COMMANDS[f"bench {sub}" if sub else a.command](a)


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    try:
        _run(a)
    except KeyboardInterrupt:
        print("vtok: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our stdout went away (e.g. `vtok info x.vtok | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (VtokError, OSError, ValueError, RuntimeError) as e:  # VtokError: ours; the rest: libraries' and the OS's
        print(f"vtok: error: {str(e).splitlines()[0] if str(e) else e.__class__.__name__}", file=sys.stderr)
        if os.environ.get("VTOK_DEBUG"):
            raise
        return 1
    except Exception as e:  # anything else is a bug: still one line (VTOK_DEBUG=1 shows the traceback)
        print(f"vtok: error: internal error ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
              f"rerun with VTOK_DEBUG=1 for details", file=sys.stderr)
        if os.environ.get("VTOK_DEBUG"):
            raise
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
