"""vtok: a causal 3D-CNN video tokenizer with lookup-free quantization, and a neural video codec built on it.

The one import name the project installs. The repository's folders are its subpackages (``pyproject.toml`` maps the
repository root to ``vtok``): ``vtok.codec`` (models, coding, media, training), ``vtok.bitstream`` (bytes: the
container, range coder, audio units), ``vtok.bench`` (benchmarks against x265 and VVC) and ``vtok.cli``.

Public API (a round trip, run by the tests)::

    >>> import numpy as np, vtok
    >>> codec = vtok.load_codec()                       # the bundled default model and its token prior
    >>> clip = np.zeros((5, 64, 96, 3), np.uint8)       # uint8 (T, H, W, 3)
    >>> data = codec.compress(clip, fps=25)             # .vtok bytes
    >>> codec.decompress(data).shape
    (5, 64, 96, 3)

``vtok.compress_file`` / ``vtok.decompress_file`` do the same for video files, ``vtok.load_tokenizer`` gives the
tokenizer alone (frames ⇄ integer tokens).
"""

import importlib

# Where each public name lives; imported on first use, so that ``vtok.cli`` (and ``vtok --help``) stay quick.
_PUBLIC = {"Codec": "vtok.codec.coding", "load_codec": "vtok.codec.loading", "compress_file": "vtok.codec.files",
           "decompress_file": "vtok.codec.files", "VideoTokenizer": "vtok.codec.models.tokenizer",
           "load_tokenizer": "vtok.codec.models.zoo"}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'vtok' has no attribute {name!r}")
