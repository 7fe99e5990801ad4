"""On-device extraction and matching, and the L4T container's entry (Python 3.6, no torch).

- :mod:`jetson.embed`: images (a folder or a list) -> embeddings, decoding on a background
  thread, written in resumable chunks (``cvnet-embed``).
- :mod:`jetson.store`: the output folder format and its reader :func:`load_embeddings`.
- :mod:`jetson.match`: exact, chunked cosine top-k of queries against a gallery
  (``cvnet-match``), with an optional FAISS backend on the host.
- :mod:`jetson.selfcheck`: what the container sees (L4T, TensorRT, CUDA, ...) and what is missing.
- :mod:`jetson.cli`: ``python3 -m jetson {embed,match,self-check,build,info,env}``.
"""
