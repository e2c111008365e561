"""Shared fixtures: tiny random tokenizers, synthetic clips and files, and the paths of ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    """Stop at once when ``vtok`` resolves to another checkout (an editable install made elsewhere): the tests would
    run that code, not this one's."""
    import vtok

    found = Path(vtok.__file__).resolve().parent
    if found != REPO:
        pytest.exit(f"`import vtok` gives {found}, not this checkout ({REPO}): reinstall with "
                    f"`pip install -e .` here (make test does)", returncode=4)


def tiny_config(**kw) -> TokenizerConfig:
    base = dict(stem_ch=8, ch=16, bits=10, group_bits=5, stem_blocks=1, blocks=1)
    base.update(kw)
    return TokenizerConfig(**base)


@pytest.fixture
def tiny_tokenizer() -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(tiny_config()).eval()


def tae_tokenizer_with_taps() -> VideoTokenizer:
    """A small TAEF2-shaped tokenizer (12 bits, one decoder refine block) whose previous-frame taps, which start at
    zero, are made to matter."""
    torch.manual_seed(0)
    tok = VideoTokenizer(TokenizerConfig(arch="tae", bits=12, group_bits=6, dec_blocks=1)).eval()
    with torch.no_grad():
        for m in tok.modules():
            if getattr(m, "prev", None) is not None:
                m.prev.weight.normal_(0, 0.02)
    return tok


def random_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def smooth_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    from vtok.bench.datasets import synthetic_clip
    return synthetic_clip(t, h, w, seed)


def need_shared(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared beside the repository)")
    return p
