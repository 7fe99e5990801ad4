"""Shared fixtures of the training tests."""

import pytest

from cvnet.core.synth import generate_dataset


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory):
    """``synthetic_set(ids, seed)``: a small 64x64 cvnet-synth set, 3 images per view, made
    once per session for each (ids, seed)."""
    made = {}

    def make(ids: int, seed: int = 0) -> str:
        if (ids, seed) not in made:
            folder = str(tmp_path_factory.mktemp(f"synth{ids}_{seed}"))
            generate_dataset(folder, ids=ids, images_per_view=3, size=64, seed=seed)
            made[ids, seed] = folder
        return made[ids, seed]

    return make
