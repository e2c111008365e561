"""vtok command line: argument parsing only, from one table (``COMMANDS``: subcommand → function, help, arguments;
an argument's ``dest`` is the function's parameter). Exit codes: 0 success; 1 an error the user can act on (bad or
damaged input with nothing usable, a missing file or folder, a model that does not fit, a failing external encoder),
one ``vtok: error: ...`` line; 2 an internal error (a bug), also one line (``VTOK_DEBUG=1`` shows the traceback); 3 a
damaged input read as far as it was intact (``decompress`` wrote its output with the lost frames concealed, ``info``
listed the damage), one ``vtok: warning: ...`` line per damaged range and one at the end; 130 interrupted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

from vtok.bench import codec_bench, evaluate, rd, speed
from vtok.bench.analysis import plot
from vtok.bench.studies import budget, gop, ladder, quantizers
from vtok.bench.tools import batch, demo, fuzz, info
from vtok.bench.tools.batch import as_flags
from vtok.codec import tokens_file
from vtok.codec.training import distill, train, train_prior
from vtok.bitstream.errors import DamagedInput, VtokError
from vtok.codec.paths import TRAIN_DATA
from vtok.codec.coding import DEFAULT_GOP
from vtok.codec.models.config import TokenizerConfig
from vtok.codec.search import PRESETS, TUNES


def WxH(text: str) -> tuple[int, int]:  # argparse names a type function in its message: "invalid WxH value"
    w, h = (int(v) for v in text.lower().split("x"))
    if w <= 0 or h <= 0:
        raise ValueError(text)
    return w, h


def _list(kind):
    """A comma-separated list of ``kind`` (an empty text: None, the function's default)."""
    def comma_separated_list(text):
        return [kind(v) for v in text.split(",") if v.strip()] or None
    return comma_separated_list


def _pair(sep: str, first, second, name: str):
    """``A<sep>B`` → ``(first(A), second(B))``."""
    def parse(text):
        a, found, b = text.partition(sep)
        if not found or not a:
            raise ValueError(text)
        return first(a), second(b)
    parse.__name__ = name
    return parse


def A(*flags, **kw):  # one argument: add_argument's own arguments
    return flags, kw


# Arguments several subcommands share: one name, one help text.
MODEL = A("--model", help="tokenizer weights (.safetensors) or a bundled model's name; default: the bundled default")
PRIOR = A("--prior", help="token prior weights; default: <model>-prior.safetensors beside the model")
EVAL = A("--data", nargs="+", help="video files or folders (default: ../shared/datasets/eval)")
TRAIN = A("--data", nargs="+", default=[str(TRAIN_DATA)], help="video files or folders (default: ../shared's)")
CACHE = A("--cache", dest="cache_dir", default="", help="preprocessed clip cache (default: <run>/cache)")
JSON = A("--json", dest="json_path", help="also write the results to this JSON file")
SIZE, FPS = A("--size", type=WxH, help="frame size of a raw .yuv input"), A("--fps", help="frame rate of a raw .yuv")
QUIET, VERBOSE = (A("-q", "--quiet", action="store_true", help="print nothing on success"),
                  A("-v", "--verbose", action="store_true", help="also print the summary as JSON"))
WORKERS = A("--workers", type=int, default=0, help="GOPs coded in N processes (0: half the CPUs, at least 1)")
DEVICE = A("--device", default="cpu", choices=["cpu", "cuda", "auto"],
           help="where the tokenizer runs (auto: CUDA if there is a device); files decode on any device")
RAY = A("--ray", metavar="auto|ADDRESS|local", help="code GOPs on a Ray cluster, N workers (pip install vtok[ray])")
NO_AUDIO = A("--no-audio", dest="audio", action="store_false", help="leave the audio out (kept in .mkv/.mp4)")
SKIP = A("--skip-existing", action="store_true", help="several inputs: skip outputs already complete")
FRAMES = A("--frames", type=int, default=33, help="frames per clip")
HOLD = A("--hold", type=float, help="encoder's temporal hold: a token bit whose latent value is within +-HOLD of zero "
         "keeps its previous latent frame's value (fewer bits; 0: off; default: the model's own, vtok info shows it)")

_T, _M = train.TrainConfig(), TokenizerConfig()  # the training defaults the train subcommand shows and passes
I, F = (lambda *f, **kw: A(*f, type=int, **kw)), (lambda *f, **kw: A(*f, type=float, **kw))  # int, float options

COMMANDS = {  # name: (the function it calls, help, arguments); "bench speed" is a subcommand of "bench"
    "compress": (batch.compress_inputs, "video file -> .vtok bitstream", [
        A("input", nargs="+", help="anything PyAV opens, a .y4m, or raw .yuv with --size and --fps; - reads stdin; "
          "several files or folders: one .vtok each into the folder -o"),
        A("-o", "--output", required=True, help=".vtok file; - writes it to stdout; a folder for several"), SKIP,
        I("--gop", help=f"frames per independently decodable unit, 1+4k (default {DEFAULT_GOP}: fewer bits; shorter "
          "seeks faster)"),
        I("--rate", help="a point of the model's rate ladder: 0 = smallest file, larger = more bits and a better "
          "picture; each model's own ladder (docs/RATE.md; the bench lists it)"), I("--bits", help="code only the first N bits of every token (coarser, smaller)"),
        I("--frames", dest="max_frames", help="compress only the first N frames"), HOLD,
        A("--preset", choices=list(PRESETS), help="encoding time for fewer bits and better pictures: fast and "
          "medium (the default) are the one-pass encoder; slow and veryslow search each GOP's bits through the "
          "decoder (docs/MODELS.md, 'Encoder search')"),
        A("--tune", choices=list(TUNES), help="what the search minimises: perceptual (default, L1 + LPIPS) or "
          "psnr (squared error)"), SIZE, FPS, NO_AUDIO,
        WORKERS, RAY, DEVICE, MODEL, PRIOR, QUIET, VERBOSE]),
    "decompress": (batch.decompress_inputs, ".vtok -> video (.y4m, .mkv lossless, .mp4 H.264, PNGs)", [
        A("input", nargs="+", help=".vtok file; - reads stdin; several files or folders: one video each into -o"),
        A("-o", "--output", required=True, help="output video; - writes Y4M to stdout; a folder for several"),
        SKIP, A("--format", default="mkv", choices=["mkv", "mp4", "y4m"], help="several inputs: output type"), MODEL,
        PRIOR, I("--start", default=0, help="first frame to decode"), I("--frames", help="number of frames to decode"),
        I("--max-pixels", help="refuse files whose frames are larger than this (default 37748736: 8K and more)"),
        A("--strict", action="store_true", help="refuse a damaged or truncated file (default: decode what is "
          "intact, conceal lost frames by repeating the last good one, exit status 3)"),
        A("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="the decoder's arithmetic: bf16 "
          "about 1.8x as fast on CPUs with native bfloat16, within a few levels of fp32's picture; auto (default): "
          "bf16 where the CPU has it, else fp32 (docs/MODELS.md)"),
        WORKERS, RAY, DEVICE, NO_AUDIO, QUIET, VERBOSE]),
    "info": (info.print_info, "header, GOPs, sizes and rates of a .vtok file", [
        A("path", metavar="input"), A("--json", dest="as_json", action="store_true")]),
    "tokenize": (tokens_file.tokenize_file, "video file -> token indices (.npz) for language models", [
        A("src", metavar="input"), A("-o", "--output", dest="out", required=True), MODEL,
        I("--bits", help="keep the first N bits of every token (rate ladder)"),
        I("--frames", dest="max_frames", help="tokenize only the first N frames"),
        A("--resize", type=WxH, help="resize frames to WxH first (bicubic)"), SIZE, FPS, DEVICE]),
    "detokenize": (tokens_file.detokenize_file, "token indices (.npz) -> video", [
        A("src", metavar="input"), A("-o", "--output", dest="out", required=True), MODEL, DEVICE]),
    "train": (train.run_training, "train a tokenizer (resumable; torchrun to run several)", [
        TRAIN, A("--run-dir", default=_T.run_dir, help="run folder: checkpoints, metrics.jsonl, ema.safetensors"),
        CACHE, A("--resume", action="store_true", help="continue from <run>/state.safetensors"),
        A("--init", default="", help="start from these tokenizer weights"),
        A("--inflate", action="store_true", help="--init is image-trained: inflate it to video"),
        I("--dec-blocks", default=-1, help="--arch tae: extra residual blocks at the start of the decoder (with "
          "--init: added to the init model, starting as the identity)"),
        A("--freeze-encoder", action="store_true", help="train the decoder only (the token family stays)"),
        I("--refine-bits", default=_T.refine_bits, help="with --init: add N refinement bits to its sign bits (a new "
          "token family whose first bits are the init model's tokens; docs/MODELS.md)"),
        A("--enhance", action="store_true", help="with --init of a model with refinement bits: tokens that carry "
          "them take a decoder start of their own (docs/MODELS.md)"),
        A("--enhance-base", default="", help="with --enhance: the sign-bit model whose decoder it grows on"),
        A("--refine-only", action="store_true", help="train only the branch that reads the refinement bits (the "
          "sign bits decode as before)"),
        F("--new-lr-mult", default=_T.new_lr_mult, help="learning-rate factor of a new refinement branch"),
        A("--arch", default=_M.arch, choices=["magvit", "tae"], help="magvit (from scratch) or tae (starts from "
          "TAEF2's weights; see docs/MODELS.md)"),
        A("--stem-head", default="", help="--arch tae: the stem and head made by 'vtok distill'"),
        A("--taef2", default="", help="--arch tae: TAEF2's weights folder (default ../shared/weights/taef2)"),
        A("--quantizer", default=_M.quantizer, help="lfq (default), vq, fq (FQGAN), gsq or regvq; see docs/QUANTIZERS.md"),
        A("--quantizer-arg", action="append", default=[],
          metavar="KEY=VALUE", help="a quantizer argument (VALUE read as JSON, else as a string), e.g. "
          "metric=cosine, branches=3; repeatable"),
        I("--bits", default=_M.bits), I("--stem-ch", default=_M.stem_ch), I("--ch", default=_M.ch),
        I("--steps", default=_T.steps),
        I("--group-bits", default=0, help="LFQ sub-token size (0: the largest divisor of --bits up to 12)"),
        F("--nested-dropout", help="share of samples trained on a bit prefix (default: 0.5 for lfq, 0 for the others, "
          "whose index bits are not ordered)"), I("--batch", default=_T.batch), I("--crop", default=_T.crop),
        I("--frames", default=_T.frames, help="frames per clip, 1+4k (1 = image pre-training)"), I("--warmup", default=_T.warmup),
        F("--lr", default=_T.lr), F("--lpips-weight", default=_T.lpips_weight), F("--prior-lr", default=_T.prior_lr),
        F("--ema", default=_T.ema, help="decay of the weights' moving average that is exported (ema.safetensors)"),
        I("--threads", default=_T.threads), I("--seed", default=_T.seed),
        F("--adv-weight", default=_T.adv_weight, help="adversarial loss weight (0: off)"),
        I("--adv-start", default=_T.adv_start, help="step at which the adversarial loss starts"),
        F("--rate-weight", default=_T.rate_weight, help="train D + λ·R: R = the token prior's bits per pixel, the prior trained "
          "along (0: no rate term)"),
        A("--prior-init", default="", help="with --rate-weight: the prior to start from (default: beside --init)"),
        F("--save-every", dest="save_every_s", default=_T.save_every_s, help="seconds between checkpoints"),
        A("--quiet", action="store_true")]),
    "distill": (distill.distill, "--arch tae, stage 1: distil the stem and head from TAEF2", [
        TRAIN, A("--run-dir", default="runs/tae", help="run folder (writes stem-head.safetensors)"), CACHE,
        A("--taef2", help="TAEF2's weights folder (default ../shared/weights/taef2)"),
        I("--steps", default=1500), I("--batch", default=16), I("--crop", default=96), F("--lr", default=1e-3)]),
    "train-prior": (train_prior.train_prior, "train the token prior on a tokenizer's tokens", [
        MODEL, A("-o", "--output", dest="out", default="runs/prior/prior.safetensors"), TRAIN, CACHE,
        A("--run-dir", default="runs/prior"), I("--steps", default=3000), I("--batch", default=16),
        I("--crop", default=32, help="crop of the token grid"), F("--lr", default=2e-3), I("--channels", default=48),
        I("--layers", default=3, help="3x3 convolutions of the prior's network"), I("--threads", default=0),
        I("--max-clips", default=0, help="tokenize only this many cached clips, spread over the cache (0: all)"),
        I("--gop", default=65, help="GOP length the cached clips are cut into before tokenizing"),
        A("--init-prior", default="", help="start from this prior (e.g. the model's shipped one)"),
        I("--save-every", default=0, help="write the prior and the run state every N steps"),
        A("--resume", action="store_true", help="continue from <run-dir>/prior-state.safetensors"),
        I("--group-bits", default=0, help="bits per coding step of a token (0: the quantizer's groups); an "
          "--init-prior of other groups is regrouped"),
        I("--held-out", default=0, help="keep every N-th GOP out of training and log its rate at each save"), HOLD]),
    "eval": (evaluate.run_evaluation, "reconstruction quality of a tokenizer on evaluation clips", [
        MODEL, EVAL, FRAMES, A("--size", type=WxH, default=(640, 360)), I("--bits"), DEVICE, JSON]),
    "bench": (rd.run_bench, "rate-distortion benchmark against x265 and VVC (or: bench speed | ...)", [
        EVAL, A("--mcl-jcv", help="folder with the MCL-JCV sequences (videoSRC*_1920x1080_*.yuv)"),
        A("--codecs", type=_list(str), default="vtok,x265,vvc", help="codecs to compare; vtok:MODEL adds a vtok "
          "model as a peer (e.g. vtok:default,vtok:runs/dec/ema.safetensors), @PRESET an encoder preset "
          "(vtok@medium,vtok@veryslow)"),
        A("--tune", choices=list(TUNES), help="what vtok's searching presets minimise (default perceptual)"),
        I("--gop", help="vtok's GOP length (default: the codec's)"), HOLD,
        A("--reuse", help="an earlier results.json (same clips, frames, size): its codecs that this run does not code "
          "are taken from it"),
        A("--rename", type=_list(_pair("=", str, str, "OLD=NEW")), default="",
          help="with --reuse: rename its codecs, OLD=NEW[,OLD=NEW]"),
        A("--qps", type=_list(int), default="22,27,32,37,42,47", help="anchor QP ladder"),
        A("--anchor-ladder", type=_list(_pair("@", int, float, "QP@SCALE")), default="", help="extra anchor points "
          "at a reduced size, QP@SCALE, e.g. 51@0.5,51@0.25 (coded smaller, scaled back up for the metrics)"),
        A("--vtok-rates", type=_list(int), help="vtok rate points, comma-separated (default: the whole ladder)"),
        I("--frames", default=33, help="frames per clip (0: all)"), A("--size", type=WxH, default=(640, 360)),
        A("--keep-size", action="store_true", help="no resizing (e.g. MCL-JCV at 1080p)"),
        A("--config", default="low-delay", choices=["low-delay", "random-access"]), A("--preset", default="medium"),
        I("--intra-period", help="frames between intra frames (default: one per clip)"), MODEL,
        A("--anchor", default="x265", help="BD-rates are against this codec"),
        I("--jobs", default=1, help="anchor encodes in parallel"), A("--out", dest="out_dir", default="bench-out"),
        A("--no-lpips", dest="lpips", action="store_false"), A("--quiet", dest="progress", action="store_false"),
        DEVICE]),
    "bench speed": (speed.run_speed, "encode/decode frames per second and peak memory, tokenizer and codec", [
        A("--model", help="one model or several, comma-separated"), FRAMES,
        A("--size", default="640x360", help="WxH, or several comma-separated (e.g. 640x360,1920x1080)"),
        A("--precision", default="fp32,bf16", help="the decoder's: fp32, bf16, auto, or several comma-separated"),
        A("--tokenizer-only", action="store_true", help="skip the whole codec"), I("--repeats", default=3)]),
    "bench codec": (codec_bench.run_codec_bench, "bpp, prior saving, coder overhead, fps, memory", [
        MODEL, PRIOR, EVAL, FRAMES, A("--skip-memory", action="store_true"),
        A("--skip-rate", action="store_true", help="skip the rate on the evaluation clips"),
        A("--presets", type=_list(str), help="also the peak memory of compress at 1080p with each encoder preset, "
          "e.g. medium,slow"), JSON]),
    "bench ladder": (ladder.compare_ladders, "two ways to many rates from one model (bits, resizing)", [
        MODEL, EVAL, FRAMES, JSON]),
    "bench budget": (budget.run_budget, "loss budget: TAEF2, stem/head, no binarisation, tokens", [
        MODEL, EVAL, I("--frames", default=_T.frames, help="frames per clip of the quality rows"), JSON]),
    "bench fuzz": (fuzz.run_fuzz, "fuzz the .vtok readers and decoder with mutants of the seed files", [
        I("--cases", default=10000), F("--seconds", default=10.0, help="time limit of one case"),
        A("--out", help="write failing inputs to this folder")]),
    "bench gop": (gop.run_gop_bench, "rate and quality against GOP length (real .vtok files)", [
        MODEL, EVAL, I("--frames", default=65), A("--rates", type=_list(int), help="rate points (default: all bits)"),
        A("--gops", type=_list(int), default="17,33,65", help="GOP lengths (0: the whole clip)"), JSON]),
    "bench quantizers": (quantizers.run_ablation_of, "ablation: the quantizers trained alike", [
        A("--names", type=_list(str), default="lfq,vq,fq,gsq,gsq-restart,regvq",
          help="ablation entries to compare (quantizers; gsq-restart: GSQ with dead-code restart)"),
        I("--bits", default=12, help="bits per token of every quantizer"), A("--train-data", nargs="+",
                                                                               default=[str(TRAIN_DATA)]),
        I("--steps", default=400, help="training steps of each tokenizer"),
        I("--prior-steps", default=300, help="training steps of each token prior"),
        A("--cache", default="", help="training clip cache (default: <out>/cache)"), JSON,
        A("--data", dest="eval_data", nargs="+", help="evaluation clips (default: ../shared/datasets/eval)"),
        I("--frames", dest="frames_eval", default=17, help="evaluation frames per clip"),
        A("--out", default="runs/quantizers", help="run folder (resumable)")]),
    "plot": (plot.plot_rd, "rate-distortion plot of a results.json", [
        A("doc_or_path", metavar="results"), A("-o", "--output", dest="out", default="rd.png")]),
    "demo": (demo.run_demo, "tokenize and reconstruct a sample clip with the bundled model", [
        MODEL, A("--out", dest="out_dir", default="out")]),
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vtok", description="vtok: a causal 3D-CNN video tokenizer and neural codec")
    subs, parsers = {"": ap.add_subparsers(dest="command", required=True)}, {}
    for name, (_, help_text, args) in COMMANDS.items():
        parent, _, leaf = name.rpartition(" ")  # "bench speed": a subcommand of "bench"
        if parent not in subs:
            subs[parent] = parsers[parent].add_subparsers(dest="sub", required=False)
        parsers[name] = p = subs[parent].add_parser(leaf, help=help_text)
        p.set_defaults(name=name)
        for flags, kw in args:
            p.add_argument(*flags, **kw)
    return ap


def _values(a: argparse.Namespace) -> dict:
    """The values of the arguments of ``a``'s own subcommand (not those of a parent such as ``bench``)."""
    return {d: getattr(a, d) for d in (kw.get("dest") or max(flags, key=len).lstrip("-").replace("-", "_")
                                       for flags, kw in COMMANDS[a.name][2])}


def _log(a: argparse.Namespace):
    """Where a command's lines go: nowhere with --quiet, stderr when the output is standard output (``-o -``)."""
    quiet, to_stderr = getattr(a, "quiet", False), getattr(a, "output", None) == "-"
    out = sys.stderr if to_stderr else sys.stdout
    return (lambda *args: None) if quiet else (lambda *args: print(*map(as_flags, map(str, args)), file=out))


def _call(fn, a: argparse.Namespace):
    """Call ``fn`` with the values its parameters name (all of them if it takes ``**kw``; None: left to its
    default); ``--verbose`` is the CLI's own: the summary the function returns, printed as JSON."""
    params = inspect.signature(fn).parameters
    takes_all, values = any(p.kind == p.VAR_KEYWORD for p in params.values()), {**_values(a), "log": _log(a)}
    result = fn(**{k: v for k, v in values.items() if (takes_all or k in params) and v is not None and k != "verbose"})
    if values.get("verbose") and not values.get("quiet"):
        _log(a)(json.dumps(result))
    return result


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    try:
        _call(COMMANDS[a.name][0], a)
        return 0
    except DamagedInput as e:
        print(f"vtok: warning: {as_flags(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("vtok: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our stdout went away (e.g. `vtok info x.vtok | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # VtokError: ours; OSError, ValueError, RuntimeError: libraries' and the OS's; else a bug
        text = as_flags(str(e).splitlines()[0]) if str(e) else ""
        ours = isinstance(e, (VtokError, OSError, ValueError, RuntimeError))
        print(f"vtok: error: {text or e.__class__.__name__}" if ours else f"vtok: error: internal error "
              f"({e.__class__.__name__}: {text}); rerun with VTOK_DEBUG=1 for details", file=sys.stderr)
        if os.environ.get("VTOK_DEBUG"):
            raise
        return 1 if ours else 2


if __name__ == "__main__":
    sys.exit(main())
