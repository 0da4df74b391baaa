"""Config round trip, a tiny end-to-end training run with resume, and evaluation, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from matchms_neims.cli import main
from matchms_neims.predictor import NeimsPredictor
from training.config import CONFIG_DIR, TrainConfig


def test_baseline_config_round_trips(tmp_path):
    config = TrainConfig.from_yaml(CONFIG_DIR / "baseline.yaml")
    assert config.model["hidden_size"] == 2000 and config.model["n_blocks"] == 7 and config.model["dropout"] == 0.25
    config.to_yaml(tmp_path / "again.yaml")
    assert TrainConfig.from_yaml(tmp_path / "again.yaml") == config


def test_unknown_config_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="optim.*learning_rate"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, tiny_training_config) -> Path:
    root = tmp_path_factory.mktemp("train")
    config = tiny_training_config("baseline.yaml", root)
    config.model.update(input_size=512, hidden_size=32, n_blocks=1)
    config.featurizer.n_bits = 512
    config.optim.max_epochs = 2
    config.export.path = str(root / "model.pt")
    config.export.name = "tiny-baseline"
    path = root / "tiny.yaml"
    config.to_yaml(path)
    return path


def test_train_resume_export_and_evaluate(tiny_config, tmp_path, capsys):
    config = TrainConfig.from_yaml(tiny_config)
    assert main(["train", "baseline", "--config", str(tiny_config), "--no-progress"]) == 0
    run_dir = Path(config.trainer.output_dir)
    last = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1
    # resume continues from last.ckpt rather than starting again
    assert main(["train", "baseline", "--config", str(tiny_config), "--resume", "--max-epochs", "3",
                 "--no-progress"]) == 0
    assert torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 2
    assert not list(run_dir.glob("*.tmp"))

    predictor = NeimsPredictor(config.export.path)
    assert predictor.model_name == "tiny-baseline"
    assert predictor.loaded.metadata["val_cosine"] is not None
    assert predictor.predict("CCO")["mz"].size > 0

    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--model", config.export.path, "--config", str(tiny_config), "--split", "test",
                 "--timing-molecules", "5", "-o", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["n_query_spectra"] > 0
    assert 0 <= report["metrics"]["cosine_sqrt"]["mean"] <= 1
    assert set(report["library_matching"]) >= {"recall@1", "recall@5", "recall@10", "recall@20"}
    assert report["inference_time"]["n_molecules"] == 5
    assert "library matching" in capsys.readouterr().out
