"""Benchmarks: what vtok measures and how it compares.

Here: the rate-distortion benchmark against the anchors (``rd``, ``vtok bench``), the whole codec's speed and memory
through real files (``codec_bench``, ``vtok bench codec``), the tokenizer's speed (``speed``) and reconstruction
quality (``evaluate``, ``vtok eval``), and the evaluation clips (``datasets``). Below: ``peers`` (the codecs compared,
vtok and the ffmpeg anchors, behind one interface), ``studies`` (one question each: loss budget, GOP length, rate
ladders, quantizers), ``analysis`` (metrics, the results schema, BD-rates, plots) and ``tools`` (commands that are not
benchmarks: ``vtok info``, the fuzzer, the demo).

May import: ``codec`` and ``bitstream`` (never ``cli``).
"""
