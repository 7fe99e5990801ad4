"""Embedding extraction with a PyTorch model through the shared preprocessing path."""

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from cvnet.core.preprocess import PreprocessConfig, preprocess_batch


class TorchEmbedder:
    """Turns decoded images into embeddings with an eval-mode PyTorch model.

    Args:
        model: A model whose eval-mode forward returns (B, D) embeddings.
        config: Input size and normalisation (must match the model's training).
        device: Torch device to run on.
        batch_size: Images per forward pass.
    """

    def __init__(self, model: nn.Module, *, config: PreprocessConfig = PreprocessConfig(),
                 device: str = "cpu", batch_size: int = 32):
        self.model = model.to(device).eval()
        self.config, self.device, self.batch_size = config, torch.device(device), batch_size

    @torch.no_grad()
    def __call__(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(H, W, 3) uint8 BGR images of any size -> (N, D) float32 embeddings, not normalised."""
        chunks = []
        for start in range(0, len(images_bgr), self.batch_size):
            batch = preprocess_batch(images_bgr[start:start + self.batch_size], self.config)
            chunks.append(self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy())
        if not chunks:
            raise ValueError("no images to embed")
        return np.concatenate(chunks)
