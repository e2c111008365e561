"""GOPs coded elsewhere: in local processes (``--workers``) and on a Ray cluster (``--ray``; here a local Ray instance
of 2 CPUs), byte-identical to one process, results in order, and a worker that dies stops the run in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from vtok.codec.files import compress_file, decompress_file
from vtok.codec.media.read import read_video
from vtok.codec.media.write import write_video
from vtok.codec.parallel import WorkerError, run_jobs
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import save_tokenizer
from vtok.codec.prior import PriorConfig, TokenPrior
from tests.conftest import smooth_clip, tiny_config

ray = pytest.importorskip("ray", reason="Ray is the optional extra vtok[ray] (make test installs it)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model, its prior, and a 3-GOP clip; a local Ray instance of 2 CPUs for the module."""
    import torch

    d = tmp_path_factory.mktemp("ray")
    torch.manual_seed(0)
    cfg = tiny_config()
    save_tokenizer(VideoTokenizer(cfg).eval(), d / "tiny.safetensors")
    TokenPrior(PriorConfig(bits=cfg.bits, group_bits=cfg.group_bits, channels=8, layers=2)).freeze().save(
        d / "tiny-prior.safetensors")
    write_video(d / "clip.y4m", smooth_clip(21, 40, 56), 25)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield d
    ray.shutdown()


def _compress(d, name, **kw):
    compress_file(d / "clip.y4m", d / name, d / "tiny.safetensors", gop=9, log=lambda *a: None, **kw)
    return (d / name).read_bytes()


def test_ray_codes_the_same_bytes_and_pictures(setup):
    d = setup
    here = _compress(d, "here.vtok")
    assert _compress(d, "ray.vtok", workers=2, ray="auto") == here  # "auto": the Ray this process has
    decompress_file(d / "here.vtok", d / "here.mkv", d / "tiny.safetensors", log=lambda *a: None)
    decompress_file(d / "here.vtok", d / "ray.mkv", d / "tiny.safetensors", log=lambda *a: None,
                    workers=2, ray="auto")
    np.testing.assert_array_equal(read_video(d / "ray.mkv"), read_video(d / "here.mkv"))


def test_results_come_back_in_order_from_every_backend(setup):
    jobs = [(i,) for i in range(7)]
    for kw in ({"workers": 2}, {"workers": 3, "ray": "auto"}):  # 3 actors on 2 CPUs: fractions of a CPU
        assert "".join(run_jobs(str, "abcdefg", "__getitem__", jobs, **kw)) == "abcdefg"


@pytest.mark.parametrize("backend", [{"workers": 2}, {"workers": 2, "ray": "auto"}], ids=["processes", "ray"])
def test_a_worker_that_dies_stops_the_run_in_one_line(setup, backend):
    with pytest.raises(WorkerError, match="worker"):
        list(run_jobs(os._exit, 3, "run", [(1,), (2,)], **backend))


def test_the_cli_runs_on_a_local_ray_instance(setup, tmp_path):
    """``--ray local`` starts Ray of this machine's CPUs in the vtok process; the same bytes as one process."""
    d = setup
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    r = subprocess.run([sys.executable, "-m", "vtok", "compress", d / "clip.y4m", "-o", tmp_path / "cli.vtok",
                        "--model", d / "tiny.safetensors", "--gop", "9", "--ray", "local", "--workers", "2", "-q"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli.vtok").read_bytes() == _compress(d, "here2.vtok")
