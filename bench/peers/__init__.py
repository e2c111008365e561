"""The codecs a benchmark compares, as peers behind one interface: vtok at any model and preset, x265 and VVenC
through the ffmpeg of ``imageio-ffmpeg`` (``anchors``).

May import: ``bench.analysis``, ``bench.datasets``, ``codec``, ``bitstream``.
"""
