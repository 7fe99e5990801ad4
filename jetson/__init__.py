"""On-device extraction and matching, and the L4T container's entry (Python 3.6, no torch).

- :mod:`cvnet.jetson.embed`: images (a folder or a list) -> embeddings, decoding on a background
  thread, written in resumable chunks (``cvnet-embed``).
- :mod:`cvnet.jetson.store`: the output folder format and its reader :func:`load_embeddings`.
- :mod:`cvnet.jetson.match`: exact, chunked cosine top-k of queries against a gallery
  (``cvnet-match``), with an optional FAISS backend on the host.
- :mod:`cvnet.jetson.eval_cli`: ``cvnet-eval``, retrieval accuracy of any model file on a dataset.
- :mod:`cvnet.jetson.selfcheck`: what the container sees (L4T, TensorRT, CUDA, ...) and what is
  missing.
- :mod:`cvnet.jetson.cli`: ``python3 -m cvnet.jetson`` with ``embed``, ``match``, ``eval``,
  ``self-check``, ``build``, ``info``, ``env``, ``bench``.
"""
