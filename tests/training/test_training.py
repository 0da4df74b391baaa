"""Config round trip, a tiny end-to-end training run with resume, and evaluation, through the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from matchms_neims.cli import main
from matchms_neims.predictor import NeimsPredictor
from matchms_neims_training.config import CONFIG_DIR, TrainConfig
from matchms_neims_training.running.callbacks import CheckpointMismatchError


def test_baseline_config_round_trips(tmp_path):
    config = TrainConfig.from_yaml(CONFIG_DIR / "baseline.yaml")
    assert config.model["hidden_size"] == 2000 and config.model["n_blocks"] == 7 and config.model["dropout"] == 0.25
    config.to_yaml(tmp_path / "again.yaml")
    assert TrainConfig.from_yaml(tmp_path / "again.yaml") == config


def test_the_bundled_recipe_config_round_trips_and_is_the_command_it_was_trained_with(tmp_path):
    config = TrainConfig.from_yaml(CONFIG_DIR / "baseline_formula_distill.yaml")
    config.to_yaml(tmp_path / "again.yaml")
    assert TrainConfig.from_yaml(tmp_path / "again.yaml") == config
    # the overrides of the selection and refit runs (docs/results.md, sixth and seventh rounds)
    command = TrainConfig.from_yaml(CONFIG_DIR / "baseline_formula.yaml").with_overrides([
        "data.split_method=scaffold", "data.cache=cache/massbank_scaffold.h5", "optim.max_epochs=30",
        "optim.early_stopping_patience=4", "distill.teacher=runs/refit_formula_ens/model.pt", "distill.gamma=0",
        "distill.soft_loss=mse", "distill.temperature_start=1.0", "distill.temperature_end=1.0",
        "distill.soft_lds_sigma=0.0", "distill.mc_samples=10", "distill.transfer_mc_samples=4",
        "distill.transfer_molecules=[../shared/data/nist17_molecules.smi]", "distill.max_transfer_molecules=4000",
        "trainer.output_dir=runs/baseline_formula_distill", "export.path=runs/baseline_formula_distill/model.pt",
        "export.name=neims-formula-distilled", "export.version=0.2.0"])
    assert command.to_dict() == config.to_dict()


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


def test_resume_refuses_other_data_settings_and_changed_weights(tiny_config, tmp_path, caplog):
    config = TrainConfig.from_yaml(tiny_config)
    assert main(["train", "baseline", "--config", str(tiny_config), "--no-progress"]) == 0
    last = Path(config.trainer.output_dir) / "last.ckpt"
    record = torch.load(last, map_location="cpu", weights_only=True)["matchms_neims"]
    assert record["model_class"] == "NeimsMLP" and len(record["state_dict_sha256"]) == 64
    assert record["data_fingerprint"] and record["code_version"]
    resume = ["train", "baseline", "--config", str(tiny_config), "--resume", "--max-epochs", "3", "--no-progress"]
    with pytest.raises(CheckpointMismatchError, match="other data"):  # other split seed -> other cache content
        fit_refused(resume, "data.split_seed=99")
    assert main([*resume, "--set", "model.hidden_size=24"]) == 2  # the command line: a message, no traceback
    assert "other model config" in caplog.text
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key] + 1.0
    torch.save(checkpoint, last)
    assert main(resume) == 2 and "tampered or corrupted" in caplog.text


def test_a_run_with_ema_weight_averaging_resumes_and_guards_both_weight_sets(tiny_config, tmp_path, caplog):
    """Under EMA the checkpoint's ``state_dict`` holds the averaged weights and ``current_model_state`` the live
    ones (Lightning's WeightAveraging). Both are digested, so the run resumes, and a change to either is refused."""
    output = tmp_path / "ema"
    arguments = ["train", "baseline", "--config", str(tiny_config), "--no-progress", "--set", "optim.ema_decay=0.9",
                 "--set", f"trainer.output_dir={output}", "--set", f"export.path={output / 'model.pt'}"]
    assert main(arguments) == 0
    last = output / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    record = checkpoint["matchms_neims"]
    assert "current_model_state" in checkpoint and len(record["current_model_state_sha256"]) == 64
    assert main([*arguments, "--resume", "--max-epochs", "3"]) == 0
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 2
    key = next(k for k, v in checkpoint["current_model_state"].items() if v.is_floating_point())
    checkpoint["current_model_state"][key] = checkpoint["current_model_state"][key] + 1.0
    torch.save(checkpoint, last)
    assert main([*arguments, "--resume", "--max-epochs", "4"]) == 2 and "tampered or corrupted" in caplog.text


def fit_refused(arguments: list[str], override: str) -> None:
    """Run the training command's handler directly, so that its exception reaches the test."""
    from matchms_neims.cli import build_parser

    args = build_parser().parse_args([*arguments, "--set", override])
    args.handler(args)


def _kill_at_first_checkpoint(arguments: list[str], last: Path) -> None:
    """Run the CLI with ``arguments`` in a subprocess and SIGKILL it as soon as ``last`` (its checkpoint) exists."""
    process = subprocess.Popen([sys.executable, "-m", "matchms_neims.cli", *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not last.exists():
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()


def test_resumed_training_ends_where_an_uninterrupted_run_ends(tiny_config, tmp_path):
    """Same seed: a run killed after its first epoch and resumed ends with bit-identical weights to a straight run."""
    def arguments(name: str) -> list[str]:
        output = tmp_path / name
        return ["train", "baseline", "--config", str(tiny_config), "--no-progress", "--max-epochs", "3",
                "--set", f"trainer.output_dir={output}", "--set", f"export.path={output / 'model.pt'}",
                "--set", "augment.c13_fraction=0.5",  # random 13C labelling, dropout, shuffling
                "--set", "trainer.torch_threads=1"]  # the same BLAS threads in both processes: bitwise sums

    assert main(arguments("straight")) == 0
    straight = torch.load(tmp_path / "straight" / "last.ckpt", map_location="cpu", weights_only=True)

    last = tmp_path / "killed" / "last.ckpt"
    _kill_at_first_checkpoint(arguments("killed"), last)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] < 2  # it was interrupted
    assert main([*arguments("killed"), "--resume"]) == 0
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert straight["epoch"] == resumed["epoch"] == 2
    assert straight["state_dict"].keys() == resumed["state_dict"].keys()
    for key, tensor in straight["state_dict"].items():
        assert torch.equal(tensor, resumed["state_dict"][key]), key


def test_an_interrupted_refit_resumes_from_its_last_epoch(tiny_config, tmp_path):
    """A refit (no validation, no best checkpoint) still writes last.ckpt after every epoch, so that a refit killed
    midway continues with ``--resume`` instead of starting again."""
    output = tmp_path / "selection"
    arguments = ["train", "baseline", "--config", str(tiny_config), "--no-progress", "--refit", "--refit-epochs", "3",
                 "--set", f"trainer.output_dir={output}", "--set", f"export.path={output / 'model.pt'}",
                 "--set", "trainer.torch_threads=1"]
    last = tmp_path / "selection_refit" / "last.ckpt"
    _kill_at_first_checkpoint(arguments, last)
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] < 2  # written before the end
    assert main([*arguments, "--resume"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2
    assert sorted(path.name for path in last.parent.glob("*.ckpt")) == ["last.ckpt"]
    assert NeimsPredictor(str(tmp_path / "selection_refit" / "model.pt")).predict("CCO")["mz"].size > 0


def test_in_batch_retrieval_loss_rewards_the_right_molecule_and_ignores_duplicates():
    from matchms_neims_training.distillation.losses import in_batch_retrieval_loss

    torch.manual_seed(0)
    target = torch.rand(6, 60) ** 4
    right = torch.sqrt(target)
    shuffled = right[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert in_batch_retrieval_loss(right, target) < 0.01 < in_batch_retrieval_loss(shuffled, target)
    # two spectra of one molecule (the same prediction twice) are not negatives of each other
    duplicated = torch.cat([right[:3], right[:1]])
    two_spectra = torch.cat([target[:3], target[:1]])
    assert in_batch_retrieval_loss(duplicated, two_spectra) < 0.01
    loss = in_batch_retrieval_loss(right.clone().requires_grad_(), target)
    loss.backward()
    # under dropout two rows of one molecule differ: the molecule ids, not the equality, keep them apart
    noisy = torch.cat([right[:3], right[:1] * 0.9 + 0.05])
    assert in_batch_retrieval_loss(noisy, two_spectra, molecule=torch.tensor([0, 1, 2, 0])) < \
        in_batch_retrieval_loss(noisy, two_spectra)


def test_mass_grouped_batches_hold_similar_masses_in_a_new_order_each_epoch():
    from matchms_neims_training.data.datamodule import MassGroupedSampler

    masses = np.random.default_rng(0).integers(50, 500, size=1000)
    sampler = MassGroupedSampler(masses, batch_size=64, seed=1, jitter=5.0)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = np.array(list(sampler))
        assert sorted(order) == list(range(1000))  # every item once
        full = masses[order[:15 * 64]].reshape(15, 64)
        assert np.median(full.max(1) - full.min(1)) <= 60  # random batches span ~400 Da
        orders.append(order)
    assert not np.array_equal(*orders)
    sampler.set_epoch(0)
    assert np.array_equal(np.array(list(sampler)), orders[0])  # a resumed run sees the same order


def _one_epoch(tiny_config, run_dir) -> TrainConfig:
    """The tiny config, one epoch, writing its checkpoints and model into ``run_dir``."""
    config = TrainConfig.from_yaml(tiny_config)
    config.optim.max_epochs = 1
    _write_into(config, run_dir)
    return config


def _write_into(config: TrainConfig, run_dir) -> None:
    config.trainer.output_dir = str(run_dir)
    config.export.path = str(run_dir / "model.pt")


def test_baseline_trains_on_mass_grouped_batches(tiny_config, tmp_path):
    from matchms_neims_training.modules.baseline import train_baseline

    config = _one_epoch(tiny_config, tmp_path / "run")
    config.data.batch_grouping = "mass"
    config.data.batch_size = 4
    config.optim.retrieval_weight = 0.002
    assert NeimsPredictor(train_baseline(config, progress=False)).predict("CCO")["mz"].size
    config.data.batch_grouping = "size"
    with pytest.raises(ValueError, match="batch_grouping"):
        train_baseline(config, progress=False)


def test_baseline_trains_with_the_retrieval_loss(tiny_config, tmp_path):
    from matchms_neims_training.modules.baseline import train_baseline

    config = _one_epoch(tiny_config, tmp_path / "run")
    config.optim.retrieval_weight = 0.002
    path = train_baseline(config, progress=False)
    assert NeimsPredictor(path).predict("CCO")["mz"].size


def test_decoy_margin_loss_counts_only_decoys_that_come_within_the_margin():
    from matchms_neims_training.distillation.losses import decoy_margin_loss

    torch.manual_seed(0)
    target = torch.rand(4, 60) ** 4
    right = torch.sqrt(target)
    unrelated = torch.zeros(3, 60)
    unrelated[:, :5] = 1.0  # peaks where the m/z weight makes them count for little
    assert decoy_margin_loss(right, target, unrelated, margin=0.05) == 0
    # a decoy predicted exactly like the first spectrum scores as high as the right entry: the margin is missed
    look_alike = torch.cat([unrelated, right[:1]])
    loss = decoy_margin_loss(right, target, look_alike, margin=0.05)
    assert float(loss) == pytest.approx(0.05 / 4, rel=1e-4)  # one pair of four spectra misses it by 0.05
    decoys = look_alike.clone().requires_grad_()
    predicted = right.clone().requires_grad_()
    decoy_margin_loss(predicted, target, decoys, margin=0.05).backward()
    assert decoys.grad[3].abs().sum() > 0 and decoys.grad[:3].abs().sum() == 0  # only the look-alike is pushed


def test_decoy_bank_leaves_out_training_molecules_and_draws_by_mass(fixtures_dir, tmp_path):
    from matchms_neims.chemistry import describe, inchikey_block, parse_smiles
    from matchms_neims.featurize import Featurizer
    from matchms_neims_training.data.decoys import DecoyBank

    smiles = ["CCO", "OCC", "CCCCCCCCCCO", "c1ccccc1Cl", "CC(=O)Oc1ccccc1C(=O)O", "not a smiles", "C" * 60]
    (tmp_path / "decoys.smi").write_text("\n".join(smiles) + "\n")
    featurizer = Featurizer("neims_count_ecfp", max_mz=500, n_bits=256, formula=True)
    ethanol = inchikey_block(describe(parse_smiles("CCO")).inchikey)
    bank = DecoyBank(tmp_path / "decoys.smi", featurizer, {ethanol})
    # ethanol (twice) is a training molecule, the SMILES is unreadable, C60H122 is above m/z 500
    assert sorted(bank.nominal_mass.tolist()) == [112, 158, 180]
    features, masses = bank.draw(torch.tensor([110, 182, 600]), window=5.0, generator=torch.Generator().manual_seed(0))
    assert masses.tolist() == [112, 180, 180]  # within 5 Da, else the nearest
    assert features.shape == (3, featurizer.size) and features[0].sum() > 0


def test_baseline_trains_against_predicted_decoys(tiny_config, tmp_path, fixtures_dir):
    from matchms_neims_training.modules.baseline import train_baseline

    config = _one_epoch(tiny_config, tmp_path / "run")
    config.data.decoy_molecules = str(fixtures_dir / "molecules_small.smi")
    config.optim.decoy_weight = 0.5
    config.optim.decoys_per_batch = 4
    assert NeimsPredictor(train_baseline(config, progress=False)).predict("CCO")["mz"].size
    config.data.decoy_molecules = ""
    with pytest.raises(ValueError, match="decoy_molecules"):
        train_baseline(config, progress=False)


def test_mined_decoys_are_those_whose_predictions_score_highest(tmp_path):
    from matchms_neims.featurize import Featurizer
    from matchms_neims_training.data.decoys import DecoyBank

    smiles = ["CCO", "CCCO", "CCCCO", "CCCCCO", "c1ccccc1", "c1ccccc1C"]
    (tmp_path / "decoys.smi").write_text("\n".join(smiles) + "\n")
    featurizer = Featurizer("neims_count_ecfp", max_mz=100, n_bits=64)
    bank = DecoyBank(tmp_path / "decoys.smi", featurizer)

    class PeakAtMass(torch.nn.Module):  # "predicts" one peak at the molecular ion
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Linear(1, 1)

        def forward(self, features, masses):
            return torch.nn.functional.one_hot(masses, 101).float()

    targets = np.zeros((2, 101), np.float32)
    targets[0, 78] = 1.0  # benzene's molecular ion
    targets[1, [60, 74]] = [1.0, 0.5]  # propanol's, then butanol's
    model = PeakAtMass().train()
    bank.mine(model, np.array([10, 11]), targets, k=2)
    assert model.training  # left as it was
    mass_of = dict(zip(range(len(bank)), bank.nominal_mass.tolist()))
    assert mass_of[int(bank.hard[10][0])] == 78 and [mass_of[int(i)] for i in bank.hard[11]] == [60, 74]
    features, masses = bank.draw_hard(torch.tensor([11, 11, 10]), generator=torch.Generator().manual_seed(0))
    assert set(masses[:2].tolist()) <= {60, 74} and masses[2] == 78 and features.shape == (3, featurizer.size)


def test_baseline_fine_tunes_against_mined_decoys(tiny_config, tmp_path, fixtures_dir):
    from matchms_neims_training.modules.baseline import train_baseline

    config = _one_epoch(tiny_config, tmp_path / "start")
    start = train_baseline(config, progress=False)
    config.init_from = str(start)
    config.data.decoy_molecules = str(fixtures_dir / "molecules_small.smi")
    config.optim.decoy_weight = 0.5
    config.optim.decoy_hard_k = 3
    config.optim.decoys_per_batch = 4
    _write_into(config, tmp_path / "run")
    tuned = NeimsPredictor(train_baseline(config, progress=False))
    assert tuned.predict("CCO")["mz"].size and tuned.loaded.metadata["initialised_from"] == str(start)


def test_baseline_distils_a_seed_ensemble_with_a_transfer_set(tiny_config, tmp_path, fixtures_dir):
    """The baseline MLP learns the spectra a teacher ensemble predicts, also for transfer molecules without spectra."""
    from matchms_neims.checkpoint import save_model
    from matchms_neims.models import NeimsMLP
    from matchms_neims.spectra import bin_spectrum
    from matchms_neims_training.commands.ensemble import build_ensemble
    from matchms_neims_training.data.featurizer import make_featurizer
    from matchms_neims_training.modules.baseline import train_baseline

    config = _one_epoch(tiny_config, tmp_path / "plain")
    config.optim.max_epochs = 10  # the tiny MLP needs a few epochs to follow a teacher of random weights
    featurizer = make_featurizer(config)
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(save_model(tmp_path / f"member{seed}.pt", NeimsMLP(**config.model).eval(), config.model,
                                  featurizer, {"name": f"member{seed}"}))
    teacher = NeimsPredictor(build_ensemble(members, tmp_path / "teacher.pt"))
    plain = NeimsPredictor(train_baseline(config, progress=False))

    config.distill.teacher = str(tmp_path / "teacher.pt")
    config.distill.alpha, config.distill.beta, config.distill.soft_loss = 0.1, 1.0, "mse"
    config.distill.mc_samples, config.distill.transfer_mc_samples = 3, 2
    config.distill.temperature_start = config.distill.soft_lds_sigma = 1.0
    config.distill.transfer_molecules = [str(fixtures_dir / "molecules_small.smi")]
    with pytest.raises(ValueError, match="distill.gamma: 0"):  # the default feature loss needs a teacher embedding
        train_baseline(config, progress=False)
    config.distill.gamma, config.distill.soft_lds_sigma = 0.0, 0.0
    _write_into(config, tmp_path / "distilled")
    distilled = NeimsPredictor(train_baseline(config, progress=False))
    assert distilled.loaded.metadata["teacher"] == str(tmp_path / "teacher.pt")
    assert distilled.loaded.metadata["transfer_molecules"] > 0

    def agreement(student: NeimsPredictor) -> float:
        """Mean cosine of the student's and the teacher's sqrt spectra, over molecules of the transfer file."""
        scores = []
        for smiles in ["CCO", "CC(=O)C", "c1ccccc1", "CCCCCCCC", "ClC(Cl)(Cl)Cl"]:
            a, b = (np.sqrt(bin_spectrum(*model.predict(smiles).values(), 500)) for model in (student, teacher))
            scores.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        return float(np.mean(scores))

    assert agreement(distilled) > agreement(plain) + 0.05
