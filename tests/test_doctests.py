"""Every example in a docstring is a round trip that runs: each module of the package with ``>>>`` lines."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import REPO

PACKAGE_DIRS = ("codec", "bitstream", "bench")


def _modules_with_examples() -> list[str]:
    files = [REPO / "__init__.py"] + [f for d in PACKAGE_DIRS for f in sorted((REPO / d).rglob("*.py"))]
    names = []
    for f in files:
        if ">>>" in f.read_text():
            parts = f.relative_to(REPO).with_suffix("").parts
            names.append(".".join(("vtok",) + (parts[:-1] if parts[-1] == "__init__" else parts)))
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
