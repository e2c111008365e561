"""Studies, one question each, measured on the evaluation clips: where the decibels go (``budget``), GOP length
(``gop``), two ways to build a rate ladder (``ladder``), the quantizers trained alike (``quantizers``).

May import: ``bench.peers``, ``bench.analysis``, ``bench.datasets``, ``codec``, ``bitstream``.
"""
