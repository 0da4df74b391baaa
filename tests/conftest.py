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


@pytest.fixture(scope="session")
def tiny_training_config(fixtures_dir):
    """Factory: a config from ``training/configs/<name>`` reading the mini MassBank fixture, on CPU, under ``root``."""

    def make(name: str, root: Path):
        from matchms_neims_training.config import CONFIG_DIR, TrainConfig

        config = TrainConfig.from_yaml(CONFIG_DIR / name)
        config.data.spectra = str(fixtures_dir / "massbank_mini.msp")
        config.data.cache = str(root / "cache.h5")
        config.data.batch_size = 16
        config.trainer.accelerator = "cpu"
        config.trainer.output_dir = str(root / "run")
        return config

    return make
