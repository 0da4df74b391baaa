"""Shared fixtures: tiny models built in seconds and the path of the test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small untrained NEIMS model file (random weights, seeded)."""
    import torch

    from matchms_neims.checkpoint import save_model
    from matchms_neims.featurize import Featurizer
    from matchms_neims.models import NeimsMLP

    torch.manual_seed(0)
    config = {"input_size": 256, "hidden_size": 32, "n_blocks": 1, "max_mz": 500}
    model = NeimsMLP(**config)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    return save_model(path, model, config, Featurizer(n_bits=256), {"name": "tiny", "version": "0.0"})


@pytest.fixture(scope="session")
def tiny_predictor(tiny_model_path):
    from matchms_neims.predictor import NeimsPredictor

    return NeimsPredictor(tiny_model_path)
