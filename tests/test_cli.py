"""The command line: tokenize/detokenize round trip and one-line errors with no partial output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from vtok.codec.tokens_file import load_token_file
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import save_tokenizer
from vtok.codec.media.read import read_video
from vtok.codec.media.write import write_video
from tests.conftest import smooth_clip, tiny_config


def vtok(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vtok", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_config()).eval()
    save_tokenizer(tok, d / "tiny.safetensors")
    torch.manual_seed(1)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), d / "other.safetensors")
    write_video(d / "clip.mkv", smooth_clip(6, 24, 40), 25)
    (d / "notvideo.mp4").write_bytes(b"this is not a video at all")
    return d


def _one_line_error(r):
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vtok: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_tokenize_detokenize_round_trip(files):
    d = files
    r = vtok("tokenize", d / "clip.mkv", "-o", d / "t.npz", "--model", d / "tiny.safetensors")
    assert r.returncode == 0, r.stderr
    data = load_token_file(d / "t.npz")
    assert data["tokens"].shape == (3, 3, 5) and list(data["size"]) == [6, 24, 40]
    assert int(data["bits"]) == 10 and data["sub_tokens"].shape == (3, 3, 5, 2)
    recombined = data["sub_tokens"][..., 0] + (data["sub_tokens"][..., 1] << 5)
    np.testing.assert_array_equal(recombined, data["tokens"])
    r = vtok("detokenize", d / "t.npz", "-o", d / "back.mkv", "--model", d / "tiny.safetensors")
    assert r.returncode == 0, r.stderr
    back = read_video(d / "back.mkv")
    assert back.shape == (6, 24, 40, 3)
    # FFV1 is lossless, so the file holds exactly what the tokenizer decoded.
    from vtok.codec.models.zoo import load_tokenizer
    tok = load_tokenizer(d / "tiny.safetensors")
    np.testing.assert_array_equal(back, tok.decode(data["tokens"].astype(np.int64), size=(6, 24, 40)))


def test_not_a_video_is_a_one_line_error(files):
    r = vtok("tokenize", files / "notvideo.mp4", "-o", files / "x.npz", "--model", files / "tiny.safetensors")
    _one_line_error(r)
    assert not (files / "x.npz").exists()


def test_missing_input_and_output_folder(files):
    _one_line_error(vtok("tokenize", files / "nope.mp4", "-o", files / "y.npz", "--model", files / "tiny.safetensors"))
    _one_line_error(vtok("tokenize", files / "clip.mkv", "-o", files / "no" / "dir" / "y.npz",
                         "--model", files / "tiny.safetensors"))
    assert not (files / "y.npz").exists()


def test_detokenize_with_another_model_names_the_needed_one(files):
    r = vtok("tokenize", files / "clip.mkv", "-o", files / "t2.npz", "--model", files / "tiny.safetensors")
    assert r.returncode == 0
    want = str(load_token_file(files / "t2.npz")["model_id"])
    r = vtok("detokenize", files / "t2.npz", "-o", files / "z.mkv", "--model", files / "other.safetensors")
    _one_line_error(r)
    assert want in r.stderr
    assert not (files / "z.mkv").exists()


def test_bad_token_file(files):
    (files / "bad.npz").write_bytes(b"garbage")
    _one_line_error(vtok("detokenize", files / "bad.npz", "-o", files / "w.mkv", "--model", files / "tiny.safetensors"))
    assert not (files / "w.mkv").exists()


def test_missing_model_file(files):
    _one_line_error(vtok("tokenize", files / "clip.mkv", "-o", files / "m.npz", "--model", files / "none.safetensors"))


def test_help_lists_subcommands():
    r = vtok("--help")
    assert r.returncode == 0
    for cmd in ("tokenize", "detokenize", "train", "eval", "bench", "demo"):
        assert cmd in r.stdout


def test_train_rejects_a_bad_quantizer_argument(tmp_path):
    for bad, says in (("branches=5", "2 or 3 branches"), ("colour=1", "'colour'"), ("nokey", "KEY=VALUE")):
        r = vtok("train", "--quantizer", "fq", "--quantizer-arg", bad, "--run-dir", tmp_path / "run",
                 "--data", tmp_path, "--steps", "1")
        _one_line_error(r)
        assert says in r.stderr and not (tmp_path / "run" / "cache").exists()


def test_quantizer_arguments_parse_json_or_strings():
    from vtok.codec.training.train import _key_value

    assert dict(map(_key_value, ["metric=cosine", "branches=3", "ema=true", "vq_args={\"decay\": 0.9}"])) == {
        "metric": "cosine", "branches": 3, "ema": True, "vq_args": {"decay": 0.9}}


def test_every_argument_reaches_its_function():
    """The table's promise: each subcommand's argument names are parameters of the function it calls (or that
    function takes them all), so nothing typed on the command line is silently dropped."""
    import inspect

    from vtok import cli

    for name, (fn, _, args) in cli.COMMANDS.items():
        params = inspect.signature(fn).parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            continue
        a = cli._parser().parse_args(name.split() + _required(args))
        missing = set(cli._values(a)) - set(params) - {"verbose"}
        assert not missing, (name, missing)


def _required(args) -> list[str]:
    out = []
    for flags, kw in args:
        if not flags[0].startswith("-"):
            out.append("x")
        elif kw.get("required"):
            out += [flags[0], "x"]
    return out
