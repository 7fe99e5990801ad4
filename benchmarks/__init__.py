"""Device-side benchmarks (Python 3.6; stdlib, numpy and OpenCV at module level, no torch).

``cvnet-bench`` (:mod:`cvnet.benchmarks.cli`, also ``python3 -m cvnet.benchmarks``): FPS, latency
and parameters against the paper's Table 2. Split by concern: :mod:`cvnet.benchmarks.stats` (latency
statistics), :mod:`cvnet.benchmarks.timing` (network-only and end-to-end loops),
:mod:`cvnet.engines.machine` (what it ran on), :mod:`cvnet.benchmarks.paper` (Table 2, shipped in
``benchmarks/data/``), :mod:`cvnet.benchmarks.report` (Markdown, JSON, CSV, plot),
:mod:`cvnet.benchmarks.run` (targets measured through :func:`cvnet.engines.open_engine`) and
:mod:`cvnet.benchmarks.models` (the default run's model cache, filled by the host install's
plugin).
:mod:`cvnet.benchmarks.metrics_speed` times the ReID metrics.
"""
