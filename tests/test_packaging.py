"""The installed distribution owns one import name, ``vtok``: the wheel holds ``vtok/`` and its metadata only, and it
works beside another package that owns the import name ``bitstream`` (PyPI has one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, smooth_clip

pytestmark = pytest.mark.slow


def _pip(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheels")
    src = d / "src"  # a copy of what the repository tracks: the build leaves its build/ there, not in the checkout
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if not f.startswith(("tests/", "docs/", ".ci/")) and (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", d / "dist", src)
    stand_in = d / "stand-in"
    (stand_in / "bitstream").mkdir(parents=True)
    (stand_in / "bitstream" / "__init__.py").write_text('NAME = "the other bitstream"\n')
    (stand_in / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=64"]\n'
                                             'build-backend = "setuptools.build_meta"\n[project]\n'
                                             'name = "bitstream"\nversion = "9.9"\n')
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", d / "dist", stand_in)
    return {w.name.split("-")[0]: w for w in (d / "dist").glob("*.whl")}


def test_the_wheel_holds_vtok_and_its_metadata_only(wheels):
    with zipfile.ZipFile(wheels["vtok"]) as z:
        names = z.namelist()
    assert {n.split("/")[0] for n in names} == {"vtok", "vtok-0.1.0.dist-info"}
    weights = sorted(Path(n).name for n in names if n.endswith(".safetensors"))
    assert weights == sorted(p.name for p in (REPO / "codec" / "weights").glob("*.safetensors"))
    assert "vtok/__main__.py" in names and "vtok/cli.py" in names and not any("tests/" in n for n in names)


def test_installed_beside_another_bitstream_package(wheels, tmp_path):
    """A fresh environment with the wheel and a stand-in ``bitstream``: both import, and vtok compresses and
    decodes (its dependencies come from this environment, the packages under test from the fresh one)."""
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    _pip("--python", python, "install", "--no-deps", "--no-index", "-q", wheels["vtok"], wheels["bitstream"])
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch and the rest
    clip = smooth_clip(9, 48, 64)
    from vtok.codec.media.write import write_video

    write_video(tmp_path / "clip.y4m", clip, 25)
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args):
        r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=tmp_path, env=run_env)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    where = run(python, "-c", "import bitstream, vtok, vtok.bitstream.container; "
                "print(bitstream.NAME); print(vtok.__file__)").splitlines()
    assert where[0] == "the other bitstream" and Path(where[1]).is_relative_to(site)
    run(env / "bin" / "vtok", "compress", "clip.y4m", "-o", "clip.vtok", "-q")
    run(python, "-m", "vtok", "decompress", "clip.vtok", "-o", "back.y4m", "-q")
    back = run(python, "-c", "import vtok; from vtok.codec.media.read import read_video; "
               "print(read_video('back.y4m').shape)")
    assert back.strip() == str((9, 48, 64, 3))
