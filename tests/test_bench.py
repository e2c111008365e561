"""Benchmark harness: BD-rate, anchors, the results schema, plots, and the CLI's errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from vtok.bench.analysis import results
from vtok.bench.peers.anchors import VVenC, X265
from vtok.bench.analysis.bdrate import bd, bd_table
from vtok.bench.analysis.metrics import psnr_frames
from vtok.bench.rd import run_bench
from vtok.codec.prior import PriorConfig, TokenPrior
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import save_tokenizer
from vtok.codec.media.write import write_video
from tests.conftest import smooth_clip, tiny_config


def test_bd_rate_hand_checked():
    rate = [0.01, 0.02, 0.04, 0.08]
    psnr = [28.0, 30.0, 32.0, 34.0]
    r, d = bd(rate, psnr, [x / 2 for x in rate], psnr)
    assert r == pytest.approx(-50.0, abs=1e-6)
    # Same rates, +1 dB everywhere: BD-PSNR = 1; the rate saving is 2**(-1/2) - 1 in this log-linear curve.
    r, d = bd(rate, psnr, rate, [q + 1 for q in psnr])
    assert d == pytest.approx(1.0, abs=1e-6)
    assert r == pytest.approx(100 * (2 ** (-0.5) - 1), abs=1e-3)


def test_bd_for_lower_is_better_metric():
    rate = [0.01, 0.02, 0.04, 0.08]
    lp = [0.40, 0.30, 0.20, 0.10]
    r, d = bd(rate, lp, [x / 2 for x in rate], lp, higher_is_better=False)
    assert r == pytest.approx(-50.0, abs=1e-6)
    r, d = bd(rate, lp, rate, [v - 0.05 for v in lp], higher_is_better=False)
    assert d == pytest.approx(-0.05, abs=1e-6) and r < 0


def test_bd_without_overlap_or_points_is_nan():
    assert all(math.isnan(v) for v in bd([1, 2, 3, 4], [30, 31, 32, 33], [1, 2, 3, 4], [10, 11, 12, 13]))
    assert all(math.isnan(v) for v in bd([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32]))


@pytest.mark.parametrize("anchor", [X265(), VVenC(), X265(config="random-access")])
def test_anchor_bpp_falls_as_qp_rises(anchor):
    clip = smooth_clip(5, 64, 96)
    sizes, quality = [], []
    for qp in (22, 32, 42):
        dec, nbytes, times = anchor.encode_decode(clip, qp)
        assert dec.shape == clip.shape and times["encode_s"] > 0
        sizes.append(nbytes)
        quality.append(float(psnr_frames(clip, dec).mean()))
    assert sizes[0] > sizes[1] > sizes[2]
    assert quality[0] > quality[2]
    assert anchor.version().startswith("ffmpeg")


def test_anchor_settings_are_recorded():
    s = VVenC(config="low-delay").settings(37)
    assert s["qp"] == 37 and s["encoder"] == "libvvenc" and s["input_pix_fmt"] == "yuv420p10le"
    assert "-qpa" in VVenC().encoder_args(37, 33)
    with pytest.raises(ValueError, match="config"):
        X265(config="fast")


@pytest.fixture(scope="module")
def bench_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    write_video(d / "clip_a.mkv", smooth_clip(5, 48, 64, seed=1), 25)
    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(tiny_config()).eval(), d / "tiny.safetensors")
    TokenPrior(PriorConfig(bits=10, group_bits=5, channels=8, layers=2)).freeze().save(d / "tiny-prior.safetensors")
    return d


def test_run_bench_writes_valid_results_and_uses_cache(bench_files, tmp_path):
    kw = dict(data=[bench_files / "clip_a.mkv"], codecs=("vtok", "x265"), qps=(27, 32, 37, 42), vtok_rates=(0, 2, 4, 5),
              frames=5, size=(64, 48), out_dir=tmp_path / "out", model=bench_files / "tiny.safetensors",
              lpips=False, progress=False, log=lambda *a: None)
    doc = run_bench(**kw)
    assert len(doc["points"]) == 8
    loaded = results.load(tmp_path / "out" / "results.json")
    assert {p["codec"] for p in loaded["points"]} == {"vtok", "x265"}
    assert (tmp_path / "out" / "results.csv").read_text().startswith("clip,codec,point")
    assert (tmp_path / "out" / "rd.png").stat().st_size > 1000
    assert (tmp_path / "out" / "compare.png").stat().st_size > 1000  # source / vtok / x265 side by side
    bdrows = json.loads((tmp_path / "out" / "bdrate.json").read_text())
    assert {r["metric"] for r in bdrows} == {"psnr"}  # no LPIPS asked, frames too small for MS-SSIM
    cached = run_bench(**kw)
    assert [p["bytes"] for p in cached["points"]] == [p["bytes"] for p in doc["points"]]
    assert bd_table(loaded, "x265")[0]["codec"] == "vtok"


def test_results_schema_rejects_bad_documents():
    with pytest.raises(results.ResultsError):
        results.validate({"schema": "other"})
    doc = {"schema": results.SCHEMA, "protocol": {}, "codecs": {}, "points": [{"clip": "a"}]}
    with pytest.raises(results.ResultsError, match="lacks"):
        results.validate(doc)


def test_cli_errors_for_missing_mcl_jcv_and_bad_results(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vtok", "bench", "--mcl-jcv", str(tmp_path / "nope"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "MCL-JCV folder not found" in r.stderr
    (tmp_path / "bad.json").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "vtok", "plot", str(tmp_path / "bad.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.startswith("vtok: error:") and r.stderr.count("\n") == 1


def test_vtok_models_as_peers(bench_files, tmp_path):
    """--codecs vtok:MODEL puts vtok models side by side, and one can be the BD-rate anchor of the other: the same
    weights under two names code the same bytes and measure a BD-rate of 0 (NaN where the tiny model's curve has
    too few rising points to fit)."""
    tiny = bench_files / "tiny.safetensors"
    doc = run_bench(data=[bench_files / "clip_a.mkv"], codecs=("vtok", f"vtok:{tiny}"), vtok_rates=(0, 2, 4, 5),
                    frames=5, size=(64, 48), out_dir=tmp_path / "peers", model=tiny, anchor=f"vtok:{tiny}",
                    lpips=False, progress=False, log=lambda *a: None)
    assert {p["codec"] for p in doc["points"]} == {"vtok", f"vtok:{tiny}"}
    a = sorted(p["bytes"] for p in doc["points"] if p["codec"] == "vtok")
    assert a == sorted(p["bytes"] for p in doc["points"] if p["codec"] != "vtok")
    rows = bd_table(doc, f"vtok:{tiny}")
    assert rows and all(r["codec"] == "vtok" and r["anchor"] == f"vtok:{tiny}" for r in rows)
    assert all(math.isnan(r["bd_rate_percent"]) or abs(r["bd_rate_percent"]) < 1e-6 for r in rows)
    with pytest.raises(ValueError, match="unknown codec"):
        run_bench(data=[bench_files / "clip_a.mkv"], codecs=("vtok:",), out_dir=tmp_path / "x", progress=False)


def test_reuse_adds_stored_codecs_under_new_names(bench_files, tmp_path):
    """--reuse takes the codecs of earlier results that this run does not code (renamed with --rename), after
    checking that they measured the same clips, frames and size."""
    kw = dict(data=[bench_files / "clip_a.mkv"], vtok_rates=(0, 2, 4, 5), frames=5, size=(64, 48),
              model=bench_files / "tiny.safetensors", lpips=False, progress=False, log=lambda *a: None)
    run_bench(codecs=("vtok", "x265"), qps=(32, 37), out_dir=tmp_path / "first", **kw)
    doc = run_bench(codecs=("vtok",), out_dir=tmp_path / "second", reuse=tmp_path / "first" / "results.json",
                    rename={"vtok": "vtok:before"}, anchor="vtok:before", **kw)
    assert set(doc["codecs"]) == {"vtok", "vtok:before", "x265"}
    before = sorted(p["bytes"] for p in doc["points"] if p["codec"] == "vtok:before")
    assert before == sorted(p["bytes"] for p in doc["points"] if p["codec"] == "vtok")
    with pytest.raises(ValueError, match="frames"):
        run_bench(codecs=("vtok",), out_dir=tmp_path / "third", reuse=tmp_path / "first" / "results.json",
                  **dict(kw, frames=3))


def test_decode_only_models_are_left_out_of_the_picture_and_refused_as_codecs(bench_files, tmp_path):
    """Reused points of a model whose weights decode only (an earlier family kept for its files) stay in the results
    and the picture comparison leaves the model out; asked to code with it, the bench refuses before any clip."""
    from vtok.codec.models.zoo import load_tokenizer

    lean = tmp_path / "lean.safetensors"
    save_tokenizer(load_tokenizer(bench_files / "tiny.safetensors"), lean, decode_only=True)
    shutil.copy(bench_files / "tiny-prior.safetensors", tmp_path / "lean-prior.safetensors")
    kw = dict(data=[bench_files / "clip_a.mkv"], vtok_rates=(0, 5), frames=5, size=(64, 48),
              model=bench_files / "tiny.safetensors", lpips=False, progress=False)
    run_bench(codecs=("vtok",), out_dir=tmp_path / "first", log=lambda *a: None, **kw)
    lines = []
    doc = run_bench(codecs=("vtok",), out_dir=tmp_path / "second", reuse=tmp_path / "first" / "results.json",
                    rename={"vtok": f"vtok:{lean}"}, log=lines.append, **kw)
    assert f"vtok:{lean}" in doc["codecs"] and (tmp_path / "second" / "compare.png").stat().st_size > 1000
    assert any("left out" in str(x) and "decodes only" in str(x) for x in lines)
    with pytest.raises(ValueError, match="decodes only"):
        run_bench(codecs=(f"vtok:{lean}",), out_dir=tmp_path / "third", log=lambda *a: None, **kw)
