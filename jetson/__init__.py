"""On-device extraction and matching, and the L4T container's entry (Python 3.6, no torch).

- :mod:`cvnet.jetson.embed`: images (a folder or a list) -> embeddings, decoding on a background
  thread, written in resumable chunks (``cvnet-embed``).
- :mod:`cvnet.jetson.store`: the output folder format (3), its lazy reader :class:`Store` and its
  writer; :mod:`cvnet.jetson.store_index` its SQLite index, :mod:`cvnet.jetson.store_legacy`
  formats 1-2 (CSV index) and their migration.
- :mod:`cvnet.jetson.match`: cosine top-k of queries against a gallery in bounded memory
  (``cvnet-match``); :mod:`cvnet.jetson.topk` the block-wise exact search (numpy or FAISS),
  :mod:`cvnet.jetson.ann_index` IVF / IVF-PQ indexes (``--build-index``).
- :mod:`cvnet.jetson.export_parquet`: a store as Parquet for a vector database
  (``export-store``).
- :mod:`cvnet.jetson.eval_cli`: ``cvnet-eval``, retrieval accuracy of any model file on a dataset.
- :mod:`cvnet.jetson.selfcheck`: what the container sees (L4T, TensorRT, CUDA, ...) and what is
  missing.
- :mod:`cvnet.jetson.cli`: ``python3 -m cvnet.jetson`` with ``embed``, ``match``, ``eval``,
  ``self-check``, ``migrate-store``, ``export-store``, ``build``, ``info``, ``env``, ``bench``.
"""
