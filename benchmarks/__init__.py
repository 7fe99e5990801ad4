"""Device-side benchmarks (Python 3.6; stdlib, numpy and OpenCV at module level, no torch).

``cvnet-bench`` (:mod:`benchmarks.cli`, also ``python3 -m benchmarks``): FPS, latency and
parameters against the paper's Table 2. Split by concern: :mod:`benchmarks.stats` (latency
statistics), :mod:`benchmarks.timing` (network-only and end-to-end loops),
:mod:`benchmarks.environment` (what it ran on), :mod:`benchmarks.paper` (Table 2, shipped in
``benchmarks/data/``), :mod:`benchmarks.report` (Markdown, JSON, CSV, plot),
:mod:`benchmarks.run` (targets measured through :func:`engines.open_engine`) and
:mod:`benchmarks.models` (the default run's exports, host only, torch imported lazily).
:mod:`benchmarks.metrics_speed` times the ReID metrics.
"""
