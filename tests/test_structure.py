"""The shape of the house: imports run cli -> bench -> codec -> bitstream, never backwards."""

from __future__ import annotations

import ast

from tests.conftest import REPO

ORDER = ["cli", "bench", "codec", "bitstream"]


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_import_direction():
    bad = []
    for layer in ORDER[1:]:
        for f in (REPO / layer).rglob("*.py"):
            for mod in _imports(f):
                if mod in ORDER and ORDER.index(mod) < ORDER.index(layer):
                    bad.append(f"{f.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def test_only_video_io_opens_video_files():
    offenders = []
    for f in (REPO / "codec").rglob("*.py"):
        if f.name == "video_io.py":
            continue
        if any(m in ("av", "decord", "cv2", "imageio") for m in _imports(f)):
            offenders.append(str(f.relative_to(REPO)))
    assert not offenders, offenders


def test_codec_never_reads_argv():
    for f in list((REPO / "codec").rglob("*.py")) + list((REPO / "bitstream").rglob("*.py")):
        assert "sys.argv" not in f.read_text() and "argparse" not in f.read_text(), f
