"""vtok's neural part, in the order a frame travels: ``media/`` reads it, ``models/`` tokenizes it, ``prior`` gives
every token bit its probability, ``entropy`` range-codes the bits in coding order, and ``coding.Codec`` frames them
into ``.vtok`` bytes (``bitstream``) — and back; ``search`` is the slower presets' encoder, ``coded`` an open file's
GOPs (and which a damaged file lost), ``loading`` finds a model and its prior. ``files`` runs that over video files,
``ladder`` holds the rate points, ``tokens_file`` exports tokens. ``training/`` trains the models; nothing used at coding time imports it.

The coding runtime (the modules at this level) may import ``codec.models``, ``codec.media`` and ``bitstream``;
never ``codec.training``, ``bench`` or the CLI. Tensors and frames only, never argv.

Public API: ``load_tokenizer(path=None)`` → ``VideoTokenizer`` with ``encode(video) -> tokens`` and
``decode(tokens) -> video`` (uint8 ``(T, H, W, 3)`` ⇄ int64 ``(T', H', W')``); ``loading.load_codec`` → ``Codec``.
"""

from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.models.zoo import load_tokenizer, save_tokenizer

__all__ = ["TokenizerConfig", "VideoTokenizer", "load_tokenizer", "save_tokenizer"]
