"""Where vtok finds what it does not ship: the shared data and weights beside the repository (``../shared``).

The one table of these paths; the CLI, training, the benchmarks and the tests read them from here. Each can be moved
with an environment variable, for machines where ``../shared`` is elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VTOK_SHARED", REPO.parent / "shared"))
TRAIN_DATA = SHARED / "datasets" / "train"
EVAL_DATA = SHARED / "datasets" / "eval"  # VTOK_EVAL_DIR overrides it in bench.datasets
LPIPS_BACKBONE = SHARED / "weights" / "lpips" / "alexnet_features.safetensors"
TAEF2_WEIGHTS = SHARED / "weights" / "taef2"
