"""Benchmarks of the walk: `python -m bench --preset tiny|sd15-small|sd15-default|largest`.

The same request and seed run through a plain reference (bench.reference: one item at a
time, the way the hosted model worked) and through animate.animate, in one process; the
table gives per-stage times, the ratio, UNet forward passes and peak memory, and says
whether the two made the same keyframes. Results also go to bench/results/<preset>.json.
"""
