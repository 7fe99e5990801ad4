"""The export defaults ``cvnet-export --help`` shows, in a module that does not import torch."""

#: ONNX opset of an export: the newest TensorRT 8.2 (the Jetson Nano's) reads.
DEFAULT_OPSET = 13
#: Batch range recorded for a dynamic-batch graph unless told otherwise: 1 crop to 32 a frame.
DEFAULT_DYNAMIC_BATCH = (1, 32)
#: Images verification uses unless told otherwise.
DEFAULT_IMAGE_COUNT = 16
