"""Host-side export: PyTorch checkpoint -> verified ONNX file + sidecar (imports torch).

``cvnet-export`` (:mod:`export.cli`) runs :func:`export.pipeline.export_model`, built from:

- :mod:`export.onnx_export`: the TorchScript exporter at a TensorRT-readable opset, checks;
- :mod:`export.graph_preprocess`: preprocessing inside the graph (pixels in);
- :mod:`export.half`: an FP16-typed graph with FP32 attention and I/O;
- :mod:`export.verify`: ONNX Runtime vs PyTorch parity figures.

The sidecar format is device-side, in :mod:`cvnet.core.artifact`.
"""
