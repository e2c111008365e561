"""The shape of the house: imports run cli -> bench -> codec -> bitstream, never backwards; inside codec/, models and
media below the coding runtime, training on top, nothing at coding time importing training; no import circles."""

from __future__ import annotations

import ast
import re
import tomllib

from tests.conftest import REPO

ORDER = ["cli", "bench", "codec", "bitstream"]
# What each part of codec/ may import from the project (besides itself); said in each subpackage's __init__.
CODEC_RULES = {
    "codec.models": ("codec.paths",),
    "codec.media": ("bitstream",),
    "codec": ("codec.models", "codec.media", "bitstream"),  # the coding runtime: coding, entropy, prior, files, ...
    "codec.training": ("codec", "codec.models", "codec.media", "bitstream"),
}


# What each part of bench/ may import from bench/ (besides itself; codec and bitstream always); said in its __init__.
BENCH_RULES = {
    "bench.analysis": (),
    "bench.peers": ("bench.analysis", "bench.datasets"),
    "bench.studies": ("bench.peers", "bench.analysis", "bench.datasets"),
    "bench.tools": ("bench.analysis", "bench.datasets"),
    "bench": ("bench.peers", "bench.analysis", "bench.datasets"),  # the benchmarks at the top: rd, codec_bench, ...
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


def _module_name(path) -> str:
    """A file's module name inside the package, without the ``vtok.`` prefix (``codec.models.tokenizer``)."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "vtok"


def _project_name(module: str) -> str | None:
    """``vtok.codec.x`` → ``codec.x``; ``vtok`` → ``vtok`` (the package's front door); other modules → None."""
    if module == "vtok":
        return "vtok"
    if module.startswith("vtok."):
        return module[5:]
    return None


def _imports(path):
    """Modules a file imports, dotted: import statements (at any depth), ``importlib.import_module`` /
    ``__import__`` calls, and the import statements inside string literals run as code (``python -c "..."``)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from vtok.codec.models import quantizers`` imports the submodule
            subs = [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            yield from subs or [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
            for m in re.finditer(r"(?:^|[;\n]\s*)(?:from\s+([\w.]+)\s+import|import\s+([\w., ]+))", node.value):
                if m.group(1):
                    yield m.group(1)
                else:
                    yield from (n.strip() for n in m.group(2).split(",") if n.strip())


def _is_module(dotted: str) -> bool:
    name = _project_name(dotted)
    if name is None or name == "vtok":
        return False
    p = REPO.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _files(*layers):
    for layer in layers:
        if (REPO / layer).is_dir():
            yield from sorted((REPO / layer).rglob("*.py"))
        elif (REPO / f"{layer}.py").is_file():
            yield REPO / f"{layer}.py"


def _project_imports(path):
    return {n for n in map(_project_name, _imports(path)) if n is not None}


def _layer(name: str) -> str:
    return "cli" if name == "vtok" else name.split(".")[0]


def test_imports_go_through_the_package():
    """Installed, the project is ``vtok`` only: a bare ``import codec`` (or bitstream, bench, cli) would find nothing,
    or another project's module. (The packaging test imports a stand-in package named ``bitstream`` on purpose.)"""
    files = [f for f in _files("cli", "bench", "codec", "bitstream", "tests") if f.name != "test_packaging.py"]
    bare = [f"{f.relative_to(REPO)} imports {m}" for f in files for m in _imports(f) if m.split(".")[0] in ORDER]
    assert not bare, bare


def test_import_direction():
    bad = []
    for layer in ORDER[1:]:
        for f in _files(layer):
            for mod in _project_imports(f):
                if ORDER.index(_layer(mod)) < ORDER.index(layer):
                    bad.append(f"{f.relative_to(REPO)} imports {mod}")
    assert not bad, bad


def _codec_part(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (REPO / "codec" / parts[-1]).is_dir() else "codec"


def test_codec_parts_import_only_what_they_may():
    """models and media stand alone; the coding runtime uses them; training uses everything, and nothing at coding
    time imports training."""
    bad = []
    for f in _files("codec"):
        part = _codec_part(_module_name(f))
        allowed = (part,) + CODEC_RULES[part]
        for mod in _project_imports(f):
            if mod.split(".")[0] not in ("codec", "bitstream"):
                continue
            target = _codec_part(mod) if mod.startswith("codec.") else mod
            if not any(name == a or name.startswith(a + ".") for name in (mod, target) for a in allowed):
                bad.append(f"{f.relative_to(REPO)} ({part}) imports {mod}")
    assert not bad, bad


def test_no_import_circles():
    graph = {_module_name(f): {m for m in _project_imports(f) if m != "vtok"}
             for f in _files("cli", "bench", "codec", "bitstream")}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt in graph and nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_circles_are_seen(tmp_path, monkeypatch):
    """The circle test's own check: two modules importing each other form a circle it reports."""
    import tests.test_structure as me

    (tmp_path / "codec").mkdir()
    (tmp_path / "codec" / "a.py").write_text("from vtok.codec.b import x\n")
    (tmp_path / "codec" / "b.py").write_text("def f():\n    from vtok.codec.a import y\n")
    monkeypatch.setattr(me, "REPO", tmp_path)
    try:
        me.test_no_import_circles()
    except AssertionError as e:
        assert "codec.a -> codec.b -> codec.a" in str(e)
    else:
        raise AssertionError("the circle was not found")


def _bench_part(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (REPO / "bench" / parts[-1]).is_dir() else "bench"


def test_bench_parts_import_only_what_they_may():
    """Analysis stands alone; peers, studies and tools use analysis and the clips; studies may run peers; nothing in
    bench/ below the top imports the benchmarks at the top."""
    bad = []
    for f in _files("bench"):
        part = _bench_part(_module_name(f))
        for mod in _project_imports(f):
            if not mod.startswith("bench."):
                continue
            allowed = (part,) + BENCH_RULES[part]
            if not any(mod == a or mod.startswith(a + ".") for a in allowed) and not (
                    part == "bench" and _bench_part(mod) == "bench"):
                bad.append(f"{f.relative_to(REPO)} ({part}) imports {mod}")
    assert not bad, bad


def _oversized(path) -> list[str]:
    """A module over ``MAX_MODULE_LINES`` lines or a function over ``MAX_FUNCTION_LINES``, unless its docstring says
    why (a paragraph starting ``Long:``)."""
    text = path.read_text()
    tree = ast.parse(text)
    out = []
    lines = text.count("\n")
    if lines > MAX_MODULE_LINES and "Long:" not in (ast.get_docstring(tree) or ""):
        out.append(f"{path.relative_to(REPO)}: {lines} lines")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and "Long:" not in (ast.get_docstring(node) or ""):
                out.append(f"{path.relative_to(REPO)}: {node.name}() {n} lines")
    return out


def test_modules_and_functions_stay_small():
    """No module over 350 lines and no function over 60 without a reason in its docstring (``Long: ...``)."""
    big = [m for f in _files("cli", "bench", "codec", "bitstream") for m in _oversized(f)]
    assert not big, big


def test_the_size_check_sees_a_long_function(tmp_path, monkeypatch):
    import tests.test_structure as me

    monkeypatch.setattr(me, "REPO", tmp_path)
    f = tmp_path / "x.py"
    f.write_text("def f():\n" + "    x = 1\n" * 70 + "\n\ndef g():\n    'Long: a table.'\n" + "    y = 1\n" * 70)
    assert me._oversized(f) == ["x.py: f() 71 lines"]


def test_only_media_opens_video_files():
    offenders = [str(f.relative_to(REPO)) for f in _files("codec") if "media" not in f.relative_to(REPO).parts
                 and any(m.split(".")[0] in ("av", "decord", "cv2", "imageio") for m in _imports(f))]
    assert not offenders, offenders


def test_codec_never_reads_argv():
    for f in list(_files("codec", "bitstream")):
        assert "sys.argv" not in f.read_text() and "argparse" not in f.read_text(), f


def test_argparse_only_in_cli():
    """The command line is parsed in one place."""
    users = sorted(str(f.relative_to(REPO)) for f in _files(*ORDER[1:]) if "argparse" in set(_imports(f)))
    assert not users, users


def test_string_imports_are_seen(tmp_path):
    f = tmp_path / "x.py"
    f.write_text('code = "import sys; import vtok.cli, torch; from vtok.codec import files"\n'
                 'import importlib\nimportlib.import_module("vtok.bench.rd")\n')
    assert {"vtok.cli", "torch", "vtok.codec", "vtok.bench.rd", "importlib", "sys"} <= set(_imports(f))


def test_every_subpackage_says_what_it_holds_and_may_import():
    for init in sorted([*REPO.glob("codec/*/__init__.py"), *REPO.glob("bench/*/__init__.py"),
                        REPO / "bench" / "__init__.py"]):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "may import" in doc.lower(), f"{init.relative_to(REPO)}: say what lives here and what it may import"


def test_every_package_folder_is_installed():
    """pyproject's package table lists every folder of the package (a folder missing there is missing from the
    wheel); folders of data only are not packages."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"vtok"} | {"vtok." + ".".join(p.parent.relative_to(REPO).parts)
                        for layer in ("codec", "bitstream", "bench") for p in (REPO / layer).rglob("__init__.py")}
    assert listed == found


def test_every_subcommand_has_one_function():
    import argparse

    from vtok import cli

    subs = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    bench = next(a for a in subs.choices["bench"]._actions if isinstance(a, argparse._SubParsersAction))
    names = set(subs.choices) | {f"bench {n}" for n in bench.choices}
    assert names == set(cli.COMMANDS)
