"""lrbench's benchmarks, beside the package (``make perf``; ``python -m perf --help``). Neither the package
nor its tests import them."""
