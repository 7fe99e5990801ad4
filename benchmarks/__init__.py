"""Device-side benchmarks (Python 3.6, numpy and OpenCV only): metric speed, later cvnet-bench."""
