"""``make gpu-check`` / ``python -m cvnet.gpucheck``: one command that proves cvnet's GPU half.

On a machine with a CUDA GPU and a CUDA build of PyTorch already installed (no network needed),
it runs, each as its own process with its log kept:

1. the test suite's ``gpu`` and ``trt`` tests (the TensorRT ones skip themselves where
   TensorRT does not import);
2. ``cvnet-bench`` in FP16 on CUDA: CVNet and the Table 2 baselines at batches 1, 8 and 32,
   network only and end to end, the CUDA-graph runner beside eager PyTorch (a PyTorch-only
   run: it exports nothing);
3. ``cvnet-synth``: a 100-identity synthetic set at 256x256;
4. ``cvnet-train``: a short mixed-precision (FP16) training of the full ``cvnet`` at 256x256,
   which must finish without a NaN and raise mAP over the untrained model;
5. ``cvnet-eval`` on the trained checkpoint (through the CUDA-graph runner);

and writes one Markdown and one JSON report. It refuses to start without a CUDA GPU;
``--smoke`` runs the same steps with tiny settings on any device, so the orchestration itself
is tested on the CPU.

This is host code (it imports torch), so it is a subpackage: the modules directly inside
``cvnet/`` are device-side and torch-free by rule.
"""
