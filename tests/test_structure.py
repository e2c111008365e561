"""The shape of the house: imports run cli -> bench -> codec -> bitstream, never backwards."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

ORDER = ["cli", "bench", "codec", "bitstream"]


def _imports(path):
    """Top-level modules a file imports: import statements, ``importlib.import_module`` / ``__import__`` calls, and
    the import statements inside string literals run as code (``python -c "..."`` children)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value).split(".")[0]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
            for m in re.finditer(r"(?:^|[;\n]\s*)(?:from\s+(\w+)[\w.]*\s+import|import\s+([\w., ]+))", node.value):
                if m.group(1):
                    yield m.group(1)
                else:
                    yield from (n.strip().split(".")[0] for n in m.group(2).split(",") if n.strip())


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


def test_argparse_only_in_cli():
    """The command line is parsed in one place."""
    users = sorted(str(f.relative_to(REPO)) for layer in ORDER[1:] for f in (REPO / layer).rglob("*.py")
                   if "argparse" in set(_imports(f)))
    assert not users, users


def test_string_imports_are_seen():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "x.py"
        f.write_text('code = "import sys; import cli, torch; from codec import files"\n'
                     'import importlib\nimportlib.import_module("bench.rd")\n')
        assert {"cli", "torch", "codec", "bench", "importlib", "sys"} <= set(_imports(f))


def test_every_subcommand_has_one_function():
    import argparse

    import cli

    subs = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    bench = next(a for a in subs.choices["bench"]._actions if isinstance(a, argparse._SubParsersAction))
    names = set(subs.choices) | {f"bench {n}" for n in bench.choices}
    assert names == set(cli.COMMANDS)
