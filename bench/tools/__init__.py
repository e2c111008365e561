"""Commands that are not benchmarks: ``vtok info`` (``info``: what a ``.vtok`` file holds), the fuzzer of the
readers and decoders (``fuzz``, ``vtok bench fuzz``) and ``vtok demo`` / ``make demo`` (``demo``).

May import: ``bench.analysis``, ``bench.datasets``, ``codec``, ``bitstream``.
"""
