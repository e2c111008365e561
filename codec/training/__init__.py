"""Everything only training needs: the tokenizer's training loop (``train``), the stem/head distillation
(``distill``), the token prior's training (``train_prior``), the clip cache and sampler (``data``), the losses
(``losses``) and checkpointed optimizer state (``optim_state``).

Nothing used at coding time imports this package. May import: all of ``codec`` and ``bitstream``.
"""
