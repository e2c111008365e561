"""The networks: the video tokenizer (``tokenizer``: ``VideoTokenizer``; ``config``: its config), the model zoo
(``zoo``: the bundled models, earlier ids and priors, saving and loading), its two bodies (``tae``: TAEF2's stages
made causal video layers; ``magvit``: the from-scratch causal 3D CNN), their building blocks (``layers``), running
them as a stream in bounded memory (``streaming``: the pixel budget, strips, the carried state), the quantizers
(``quantizers/``), TAEF2 itself (``taef2``) and the frozen networks training and the bench borrow (``perceptual``: LPIPS; ``teacher``: FQ's feature teachers).

Tensors only: nothing here opens a media file or writes bytes. May import: ``codec.models`` and ``codec.paths``.
"""
