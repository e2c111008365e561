"""Fuzzing the ``.vtok`` readers and decoder in process (``bench.fuzz``): a short run of mutants of the seed files."""

from __future__ import annotations

import pytest

from vtok.bench.tools.fuzz import fuzz, fuzz_codec, load_seeds, mutate, run_case
from vtok.bitstream.container import reseal


def test_seeds_decode_and_reseal_keeps_valid_files_valid():
    codec = fuzz_codec()
    for seed in load_seeds():
        assert reseal(seed) == seed
        assert run_case(seed, codec) == "decoded"
    # a mutant that is resealed gets past the checksums (a flipped payload bit no longer fails the CRC)
    seed = load_seeds()[0]
    bad = mutate(seed, [("flip", 0.9, 3)], resealed=False)
    good = mutate(seed, [("flip", 0.9, 3)], resealed=True)
    assert bad[:-40] == good[:-40] and bad != good


def test_short_fuzz_run_finds_no_failure():
    """Every mutant ends in a typed VtokError or decodes; none raises anything else, hangs or balloons memory."""
    pytest.importorskip("hypothesis")
    report = fuzz(400, seed=0, seconds=20.0, log=lambda *a: None)
    assert report.cases == 400 and report.rejected > 0 and report.decoded > 0
    assert not report.failures, [(k, m) for k, m, _ in report.failures[:5]]
