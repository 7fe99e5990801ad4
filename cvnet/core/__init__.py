"""cvnet's torch-free core: what both worlds need, safe on the device (Python 3.6, no torch).

Everything in this package imports only the standard library, numpy and OpenCV at module level,
and never torch or a host module (:mod:`cvnet.models`, :mod:`cvnet.training`, ...), not even
inside a function: it runs on a Jetson Nano under Python 3.6, and the host imports it too.

- :mod:`cvnet.core.errors`: the exception hierarchy; :mod:`cvnet.core.fileio` atomic, durable
  writes; :mod:`cvnet.core.filenames` file names as bytes;
- :mod:`cvnet.core.preprocess`: the one preprocessing path every backend shares;
- :mod:`cvnet.core.artifact`: the sidecar contract next to every ``.onnx`` and ``.plan``;
- :mod:`cvnet.core.tensorrt_ops`: which ONNX operators each TensorRT parses (its lists in
  ``tensorrt_onnx_ops.json``);
- :mod:`cvnet.core.datasets`, :mod:`cvnet.core.metrics`, :mod:`cvnet.core.evaluation`,
  :mod:`cvnet.core.visualize`: ReID data, metrics and evaluation of any embedder;
- :mod:`cvnet.core.synth`: the procedural cross-view vehicle set (``cvnet-synth``);
- :mod:`cvnet.core.cpu`, :mod:`cvnet.core.progress`: what this process may use of the CPU and
  how busy other processes keep it; progress lines.

docs/layout.md describes the two worlds and the import rule.
"""
