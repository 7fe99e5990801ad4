"""Host-side export: PyTorch checkpoint -> verified ONNX file + sidecar (imports torch).

``cvnet-export`` (:mod:`cvnet.export.cli`) runs :func:`cvnet.export.pipeline.export_model`, built
from:

- :mod:`cvnet.export.onnx_export`: the TorchScript exporter at a TensorRT-readable opset, checks;
- :mod:`cvnet.export.graph_preprocess`: preprocessing inside the graph (pixels in);
- :mod:`cvnet.export.half`: an FP16-typed graph with FP32 attention and I/O;
- :mod:`cvnet.export.verify`: ONNX Runtime vs PyTorch parity figures.

The sidecar format is device-side, in :mod:`cvnet.core.artifact`.
"""
