"""Reading what benchmarks measure: quality metrics on decoded frames (``metrics``), the one results schema
(``results``), Bjøntegaard deltas (``bdrate``) and rate-distortion plots (``plot``).

May import: ``codec`` and ``bitstream`` only (nothing else in ``bench``).
"""
