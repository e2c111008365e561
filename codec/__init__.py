"""vtok's neural part: the causal 3D-CNN tokenizer, its quantizers, training, and video I/O.

Public API: ``load_tokenizer(path=None)`` → ``VideoTokenizer`` with ``encode(video) -> tokens`` and
``decode(tokens) -> video`` (uint8 ``(T, H, W, 3)`` ⇄ int64 ``(T', H', W')``).
"""

from codec.tokenizer import TokenizerConfig, VideoTokenizer, load_tokenizer, save_tokenizer

__all__ = ["TokenizerConfig", "VideoTokenizer", "load_tokenizer", "save_tokenizer"]
