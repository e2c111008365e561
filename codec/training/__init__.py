"""Everything only training needs: the tokenizer's training loop (``train``) and where its runs start (``start``:
TAEF2, ``--init``, grown decoders and refinement bits, ``refine``), the stem/head distillation (``distill``), the
token prior's training (``train_prior``), the clip cache and sampler (``data``), the losses (``losses``) and what the
three loops share (``toolkit``: schedule, EMA, safetensors checkpoints, metrics log).

Nothing used at coding time imports this package. May import: all of ``codec`` and ``bitstream``.
"""
