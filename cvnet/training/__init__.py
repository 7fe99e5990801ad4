"""Training CVNet (host side, torch): losses, P x K sampling, augmentation, optimisers, loop."""
