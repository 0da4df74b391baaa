"""Distillation of the student: losses, schedules, GradNorm, expert groups, soft labels, one CPU epoch end to end."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from matchms_neims.checkpoint import save_model
from matchms_neims.chemistry import parse_smiles
from matchms_neims.cli import main
from matchms_neims.featurize import Featurizer
from matchms_neims.predictor import NeimsPredictor
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache
from matchms_neims_training.distillation.expert_groups import EXPERT_GROUPS, initialise_gate, molecule_group
from matchms_neims_training.distillation.gradnorm import GradNormWeights
from matchms_neims_training.distillation.losses import (
    feature_distillation_loss,
    mass_weighted_mse,
    routing_entropy,
    soft_distillation_loss,
    soft_mse_distillation_loss,
    switch_balance_loss,
    tempered_distribution,
    weight_balance_loss,
)
from matchms_neims_training.distillation.schedules import TEMPERATURE_SCHEDULES, temperature_at
from matchms_neims_training.distillation.soft_labels import SoftLabels, build_soft_labels
from matchms_neims_training.distillation.transfer import TransferDataset, build_transfer_labels
from matchms_neims_training.running.optim import configure_optimization

TINY_STUDENT = dict(n_bits=256, n_count_bits=128, width=32, expert_inner=48, n_experts=4, top_k=2,
                    blocks_per_expert=2, gate_hidden=[32, 16], head_hidden=[64], dropout=0.1)
TINY_TEACHER = dict(atom_embedding_dim=16, bond_embedding_dim=16, hidden_size=32, n_layers=2, attention_hidden=16,
                    ecfp_size=256, ecfp_transform="log1p", ecfp_hidden=[64, 24], fusion_hidden=[64, 32])


# ------------------------------------------------------------------------------------------ losses

def _spectra(seed: int, batch: int = 4, bins: int = 30) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(batch, bins, generator=generator) * (torch.rand(batch, bins, generator=generator) > 0.6)
    values[:, 5] = 1.0
    return values


def test_soft_loss_is_zero_for_equal_spectra_and_positive_otherwise():
    teacher, student = _spectra(0), _spectra(1)
    std = torch.rand_like(teacher)
    for temperature in (1.0, 2.5, 4.0):
        assert soft_distillation_loss(teacher.clone(), teacher, temperature, std).abs() < 1e-6
        assert soft_distillation_loss(student, teacher, temperature, std) > 1e-3
    rows = tempered_distribution(teacher, 4.0)
    assert torch.allclose(rows.sum(-1), torch.ones(4))
    # a higher temperature flattens: the small bins gain share
    assert tempered_distribution(teacher, 4.0).min() > tempered_distribution(teacher, 1.0).min()


def test_soft_loss_down_weights_uncertain_bins_and_masked_rows():
    teacher, student = _spectra(0), _spectra(1)
    confident = soft_distillation_loss(student, teacher, 2.0, torch.zeros_like(teacher))
    uncertain = soft_distillation_loss(student, teacher, 2.0, torch.full_like(teacher, 3.0))
    assert torch.isclose(uncertain, confident / 4, rtol=1e-5)
    only_first = soft_distillation_loss(student, teacher, 2.0, sample_weight=torch.tensor([1.0, 0, 0, 0]))
    assert torch.isclose(only_first, soft_distillation_loss(student[:1], teacher[:1], 2.0), rtol=1e-5)


def test_soft_mse_loss_is_the_hard_loss_against_the_teacher_at_temperature_one():
    teacher, student = _spectra(0), _spectra(1)
    for temperature in (1.0, 2.5):
        assert soft_mse_distillation_loss(teacher.clone(), teacher, temperature, torch.rand_like(teacher)) < 1e-9
        assert soft_mse_distillation_loss(student, teacher, temperature) > 1e-3
    # T = 1, no confidence weights: mass_weighted_mse with the squared teacher mean as the target spectrum
    expected = mass_weighted_mse(student, teacher**2, mass_power=1.0)
    assert torch.isclose(soft_mse_distillation_loss(student, teacher, 1.0, mass_power=1.0), expected, rtol=1e-5)
    uncertain = soft_mse_distillation_loss(student, teacher, 1.0, torch.full_like(teacher, 1.0))
    assert torch.isclose(uncertain, expected / 2, rtol=1e-5)
    only_first = soft_mse_distillation_loss(student, teacher, sample_weight=torch.tensor([1.0, 0, 0, 0]))
    assert torch.isclose(only_first, soft_mse_distillation_loss(student[:1], teacher[:1]), rtol=1e-5)
    # the m/z weighting: the same error costs more at a higher m/z
    low, high = teacher.clone(), teacher.clone()
    low[:, 2] += 0.5
    high[:, 25] += 0.5
    assert soft_mse_distillation_loss(high, teacher) > soft_mse_distillation_loss(low, teacher)


def test_feature_loss_zero_for_equal_features_and_positive_otherwise():
    features = torch.randn(5, 8)
    assert feature_distillation_loss(features, features.clone()) == 0
    assert feature_distillation_loss(features + 0.1, features) > 0


def test_balance_loss_smallest_when_routing_is_uniform():
    uniform = torch.full((8, 4), 0.25)
    balanced = torch.tensor([[0, 1], [2, 3]] * 4)
    skewed_probabilities = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 8)
    skewed = torch.tensor([[0, 1]] * 8)
    assert torch.isclose(switch_balance_loss(uniform, balanced), torch.tensor(1.0))
    assert switch_balance_loss(skewed_probabilities, skewed) > 1.5
    assert routing_entropy(uniform) > routing_entropy(skewed_probabilities) > 0


def test_weight_balance_loss_revives_an_expert_that_is_chosen_but_weighted_near_zero():
    from matchms_neims.models.student import StudentMoE

    assert float(weight_balance_loss(torch.full((8, 4), 0.25))) == 0.0
    dead = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.5, 0.0, 0.5, 0.0]] * 4)  # expert 3: nothing
    assert torch.isclose(weight_balance_loss(dead), torch.tensor(1 / 3))
    torch.manual_seed(0)
    model = StudentMoE(n_bits=16, n_count_bits=0, width=8, expert_inner=8, n_experts=4, top_k=2,
                       blocks_per_expert=1, gate_hidden=(), head_hidden=(), max_mz=20)
    with torch.no_grad():  # the gate all but shuts expert 3 out; the bias still makes it chosen
        model.gate[-1].bias.copy_(torch.tensor([3.0, 3.0, 3.0, -6.0]))
        model.gate_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 20.0]))
    fingerprints = (torch.rand(64, 16) < 0.3).float()

    def weight_of_expert_3() -> float:
        return float(model.route(fingerprints)[2][:, 3].mean())

    before = weight_of_expert_3()
    assert before < 0.01 and bool((model.route(fingerprints)[1] == 3).any(dim=1).all())
    optimizer = torch.optim.Adam(model.gate.parameters(), lr=0.05)
    for _ in range(30):
        optimizer.zero_grad()
        weight_balance_loss(model.route(fingerprints)[2]).backward()
        optimizer.step()
    assert weight_of_expert_3() > 0.15 > 10 * before


# ---------------------------------------------------------------------------------- schedules, GradNorm

@pytest.mark.parametrize("kind", TEMPERATURE_SCHEDULES)
def test_temperature_schedules_hit_their_end_points(kind):
    assert temperature_at(0, 30, 4.0, 1.0, kind) == pytest.approx(4.0)
    assert temperature_at(29, 30, 4.0, 1.0, kind) == pytest.approx(1.0)
    assert temperature_at(100, 30, 4.0, 1.0, kind) == pytest.approx(1.0)
    middle = temperature_at(15, 30, 4.0, 1.0, kind)
    assert 1.0 < middle < 4.0
    with pytest.raises(ValueError, match="schedule"):
        temperature_at(0, 30, kind="step")


def test_gradnorm_keeps_weight_ratios_in_bounds():
    shared = torch.randn(16, requires_grad=True)
    gradnorm = GradNormWeights([0.3, 0.5, 0.2], alpha=1.5, lr=0.2, ratio_bounds=(0.5, 2.0))
    for _ in range(200):  # gradient scales 1e7 apart, same training rates
        losses = [1000.0 * (shared ** 2).sum(), 1e-4 * shared.sum() ** 2, (shared ** 2).mean()]
        weights = gradnorm.update(losses, shared)
        ratios = weights / gradnorm.initial
        assert (ratios >= 0.5 - 1e-9).all() and (ratios <= 2.0 + 1e-9).all()
    # the loss with the huge gradients was pushed to the lower bound, the others up
    assert gradnorm.ratios()[0] == pytest.approx(0.5)
    assert gradnorm.ratios()[1] > 1.0
    restored = GradNormWeights([0.3, 0.5, 0.2])
    restored.load_state_dict(gradnorm.state_dict())
    assert torch.equal(restored.weights, gradnorm.weights)


def test_gradnorm_moves_weight_toward_the_slower_loss():
    shared = torch.randn(8, requires_grad=True)
    gradnorm = GradNormWeights([0.5, 0.5], lr=0.05)
    gradnorm.update([(shared ** 2).sum(), (shared ** 2).sum()], shared)  # first values: the reference
    for _ in range(20):  # same gradients, but loss 1 stays high while loss 0 dropped to a tenth
        gradnorm.update([(shared ** 2).sum() * 0.1, (shared ** 2).sum()], shared)
    assert gradnorm.weights[1] > gradnorm.weights[0]


def test_onecycle_schedule_needs_the_step_count():
    config = TrainConfig.from_yaml("training/configs/student_distill.yaml")
    parameters = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="steps"):
        configure_optimization(parameters, config.optim)
    setup = configure_optimization(parameters, config.optim, total_steps=100)
    assert setup["lr_scheduler"]["interval"] == "step"
    assert setup["optimizer"].param_groups[0]["lr"] == pytest.approx(config.optim.max_lr / 25)


# ------------------------------------------------------------------------------------- expert groups

@pytest.mark.parametrize("smiles, group", [("c1ccccc1CC", "aromatic"), ("CCCCCCCC(=O)O", "aliphatic"),
                                           ("c1ccncc1", "heterocyclic"), ("C1CCOC1", "heterocyclic"),
                                           ("ClC(Cl)(Cl)Cl", "general"), ("CC1CCCCC1", "aliphatic")])
def test_molecule_groups(smiles, group):
    assert EXPERT_GROUPS[molecule_group(parse_smiles(smiles))] == group


def test_gate_initialisation_routes_groups_to_their_experts():
    smiles = ["c1ccccc1", "Cc1ccccc1", "CCCCCC", "CCCCO", "c1ccncc1", "C1CCNCC1", "ClC(Cl)Cl", "OC(=O)C(=O)O"] * 4
    featurizer = Featurizer("student_fingerprint", n_bits=256, n_count_bits=128)
    fingerprints = torch.from_numpy(np.stack([featurizer.features_of_mol(parse_smiles(s)) for s in smiles]))
    groups = np.array([molecule_group(parse_smiles(s)) for s in smiles])
    gate = torch.nn.Sequential(torch.nn.Linear(384, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    accuracy = initialise_gate(gate, fingerprints, groups, n_experts=4, steps=200, batch_size=16)
    assert accuracy == 1.0


# --------------------------------------------------------------------------------- soft labels + CLI

@pytest.fixture(scope="module")
def tiny_student_config(tmp_path_factory, tiny_training_config) -> Path:
    from matchms_neims.models.teacher import TeacherGNN

    root = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    teacher_path = root / "teacher.pt"
    teacher_featurizer = Featurizer("graph_ecfp_counts", max_mz=500, n_bits=256)
    save_model(teacher_path, TeacherGNN(**TINY_TEACHER).eval(), TINY_TEACHER, teacher_featurizer,
               {"name": "tiny-teacher"})
    config = tiny_training_config("student_distill.yaml", root)
    config.model.update(TINY_STUDENT)
    config.featurizer.n_bits, config.featurizer.n_count_bits = 256, 128
    config.distill.teacher = str(teacher_path)
    config.distill.mc_samples = 4
    config.distill.weight_warmup_epochs = 1  # GradNorm from the second epoch
    config.distill.temperature_start, config.distill.soft_lds_sigma = 4.0, 1.5  # the design's values, exercised
    config.distill.gate_init_steps = 20
    config.optim.max_epochs = 2
    config.export.path = str(root / "run" / "model.pt")
    config.export.name = "tiny-student"
    path = root / "tiny_student.yaml"
    config.to_yaml(path)
    return path


def test_soft_labels_are_cached_and_rebuilt_for_a_new_teacher(tiny_student_config, tmp_path):
    config = TrainConfig.from_yaml(tiny_student_config)
    path = build_soft_labels(config, progress=False)
    assert path.parent == Path(config.data.cache).parent and "teacher-" in path.name
    with h5py.File(path, "r") as handle:
        rows, mean, std = handle["rows"][:], handle["mean"][:], handle["std"][:]
        assert handle.attrs["mc_samples"] == 4 and handle["embedding"].shape == (len(rows), 24)
    assert len(rows) > 0 and np.allclose(mean.max(axis=1), 1.0) and (std >= 0).all() and std.max() > 0
    modified = path.stat().st_mtime_ns
    assert build_soft_labels(config, progress=False) == path and path.stat().st_mtime_ns == modified  # reused

    labels = SoftLabels(path, lds_sigma=1.5)
    smoothed, _, embedding = labels.get(int(rows[0]))
    assert smoothed.max() == pytest.approx(1.0) and (smoothed > 0).sum() > (mean[0] > 0).sum()
    assert labels.get(-1) is None and embedding.shape == (24,)

    copy = tmp_path / "teacher_copy.pt"  # the same file elsewhere: same hash, same labels
    copy.write_bytes(Path(config.distill.teacher).read_bytes())
    config.distill.teacher = str(copy)
    assert build_soft_labels(config, progress=False) == path
    from matchms_neims.models.teacher import TeacherGNN

    torch.manual_seed(1)
    other = tmp_path / "teacher_other.pt"
    save_model(other, TeacherGNN(**TINY_TEACHER).eval(), TINY_TEACHER, Featurizer("graph_ecfp_counts", n_bits=256))
    config.distill.teacher = str(other)
    assert build_soft_labels(config, progress=False) != path  # a new teacher gets new labels

    config.distill.teacher = str(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="train the teacher first"):
        build_soft_labels(config, progress=False)


def test_distil_student_two_epochs_end_to_end(tiny_student_config, tmp_path, caplog):
    config = TrainConfig.from_yaml(tiny_student_config)
    with caplog.at_level("INFO"):
        assert main(["train", "student", "--config", str(tiny_student_config), "--no-progress"]) == 0
    log = caplog.text
    assert "gate initialised from the groups" in log and "train_expert_usage_0=" in log
    assert "train_soft_loss=" in log and "train_feature_loss=" in log and "train_weight_soft=" in log
    student = NeimsPredictor(config.export.path)
    assert student.loaded.model_class == "StudentMoE" and student.model_name == "tiny-student"
    metadata = student.loaded.metadata
    assert metadata["val_recall_at_10"] is not None and metadata["teacher"] == config.distill.teacher
    weights = metadata["loss_weights"]
    assert set(weights) == {"hard", "soft", "feature"}
    for name, start in (("hard", 0.3), ("soft", 0.5), ("feature", 0.2)):
        assert 0.5 * start - 1e-9 <= weights[name] <= 2 * start + 1e-9
    spectra = student.predict_spectra(["CCO", "nonsense", "c1ccccc1O"])
    assert len(spectra) == 2
    for spectrum in spectra:
        weights = np.asarray(spectrum.get("expert_weights"))
        assert weights.shape == (4,) and (weights > 0).sum() == 2 and weights.sum() == pytest.approx(1, abs=1e-3)
    single = student.predict("c1ccccc1O")
    assert single["expert_weights"].shape == (4,) and len(single["mz"]) > 0

    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--model", config.export.path, "--config", str(tiny_student_config), "--split", "test",
                 "--timing-molecules", "3", "-o", str(report_path)]) == 0
    assert "recall@10" in json.loads(report_path.read_text())["library_matching"]


def test_distil_with_the_mse_soft_loss(tiny_student_config, tmp_path, caplog):
    with caplog.at_level("INFO"):
        assert main(["train", "student", "--config", str(tiny_student_config), "--set", "distill.soft_loss=mse",
                     "--max-epochs", "1", "--output-dir", str(tmp_path / "mse"), "--no-progress"]) == 0
    assert "train_soft_loss=" in caplog.text
    assert NeimsPredictor(str(tmp_path / "mse" / "model.pt")).loaded.model_class == "StudentMoE"
    assert main(["train", "student", "--config", str(tiny_student_config), "--set", "distill.soft_loss=l1",
                 "--max-epochs", "1", "--output-dir", str(tmp_path / "l1"), "--no-progress"]) == 2


def test_student_without_teacher_trains_on_experimental_spectra(tiny_student_config, tmp_path, caplog):
    with caplog.at_level("INFO"):
        assert main(["train", "student", "--config", str(tiny_student_config), "--set", "distill.teacher=''",
                     "--max-epochs", "1", "--output-dir", str(tmp_path / "alone"), "--no-progress"]) == 0
    assert "train_soft_loss" not in caplog.text and "train_hard_loss=" in caplog.text
    loaded = NeimsPredictor(str(tmp_path / "alone" / "model.pt")).loaded
    assert loaded.metadata["teacher"] is None and list(loaded.metadata["loss_weights"]) == ["hard"]


# ------------------------------------------------------------------------------------------ transfer set

def test_hard_loss_skips_rows_without_an_experimental_spectrum():
    predicted, target = _spectra(0), _spectra(1) ** 2
    has_target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(mass_weighted_mse(predicted, target, 1.0, has_target),
                               mass_weighted_mse(predicted[:2], target[:2], 1.0))
    torch.testing.assert_close(mass_weighted_mse(predicted, target, 1.0, torch.ones(4)),
                               mass_weighted_mse(predicted, target, 1.0))


def _transfer_file(tmp_path, config: TrainConfig) -> tuple[Path, str]:
    """A molecule list: a training molecule of the cache, two new ones (one repeated), a broken line."""
    metadata = CacheMetadata(build_cache(config.data, progress=False))
    known = str(metadata.columns["smiles"][metadata.indices("test")[0]])
    path = tmp_path / "transfer.smi"
    path.write_text(f"{known}\tknown\nCCCCCCCCCCO\tdecanol\nnot_a_smiles\tbroken\nOCCCCCCCCCC\tdecanol again\n"
                    "c1ccc2ccccc2c1\tnaphthalene\n")
    return path, known


def test_transfer_labels_leave_out_cache_molecules_and_are_reused(tiny_student_config, tmp_path):
    config = TrainConfig.from_yaml(tiny_student_config)
    assert build_transfer_labels(config, progress=False) is None  # no transfer molecules: none
    path, known = _transfer_file(tmp_path, config)
    config.distill.transfer_molecules = [str(path)]
    config.distill.transfer_mc_samples = 3
    labels = build_transfer_labels(config, progress=False)
    with h5py.File(labels, "r") as handle:
        smiles = [value.decode() for value in handle["smiles"][:]]
        mean, std = handle["mean"][:], handle["std"][:]
        assert handle.attrs["mc_samples"] == 3 and handle["embedding"].shape == (2, 24)
    assert smiles == ["CCCCCCCCCCO", "c1ccc2ccccc2c1"]  # the held-out molecule, the repeat and the broken line left out
    assert np.allclose(mean.max(axis=1), 1.0) and (std >= 0).all() and std.max() > 0
    modified = labels.stat().st_mtime_ns
    assert build_transfer_labels(config, progress=False) == labels and labels.stat().st_mtime_ns == modified

    dataset = TransferDataset(labels, Featurizer(**config.featurizer.__dict__))
    item = dataset[1]
    assert len(dataset) == 2 and item["has_target"] == 0 and item["has_teacher"] == 1 and item["index"] == -1
    assert item["features"].shape == (256 + 128,) and int(item["nominal_mass"]) == 128
    assert torch.equal(item["teacher_mean"], torch.from_numpy(mean[1])) and item["target"].abs().sum() == 0

    config.distill.max_transfer_molecules = 1
    assert build_transfer_labels(config, progress=False) != labels  # other settings: other labels


def test_distil_with_a_transfer_set_end_to_end(tiny_student_config, tmp_path, caplog):
    config = TrainConfig.from_yaml(tiny_student_config)
    path, _ = _transfer_file(tmp_path, config)
    with caplog.at_level("INFO"):
        assert main(["train", "student", "--config", str(tiny_student_config), "--max-epochs", "1",
                     "--set", f"distill.transfer_molecules=[{path}]", "--set", "distill.transfer_mc_samples=2",
                     "--output-dir", str(tmp_path / "transfer"), "--no-progress"]) == 0
    assert "transfer set: 2 molecules labelled by the teacher join the training split" in caplog.text
    loaded = NeimsPredictor(str(tmp_path / "transfer" / "model.pt")).loaded
    assert loaded.metadata["transfer_molecules"] == 2


def test_refit_student_with_the_formula_head_on_all_data(tiny_student_config, tmp_path):
    """`train student --refit`: distillation on every cleaned spectrum, here into a formula-head student."""
    from matchms_neims.checkpoint import load_model
    from matchms_neims.models.formula_head import FormulaHead

    config = TrainConfig.from_yaml(tiny_student_config)
    config.model.update(head="formula", formula_head={"hidden": 8})
    config.featurizer.formula = True
    config.trainer.output_dir = str(tmp_path / "run")
    config.export.path = str(tmp_path / "run" / "model.pt")
    config.data.cache = str(tmp_path / "cache.h5")
    path = tmp_path / "formula_student.yaml"
    config.to_yaml(path)
    assert main(["train", "student", "--config", str(path), "--refit", "--refit-epochs", "1", "--no-progress"]) == 0
    refit = load_model(tmp_path / "run_refit" / "model.pt")
    assert isinstance(refit.model.head, FormulaHead) and refit.featurizer.formula
    assert refit.metadata["split"]["method"] == "all" and refit.metadata["refit"]["epochs"] == 1
    assert (CacheMetadata(tmp_path / "cache.all.h5").split == 0).all()
    spectrum = NeimsPredictor(tmp_path / "run_refit" / "model.pt").predict_spectra(["Clc1ccccc1O"])[0]
    assert len(spectrum.metadata["expert_weights"]) == 4


def test_distil_from_an_ensemble_of_formula_head_mlps(tiny_student_config, tmp_path, caplog):
    """A baseline-MLP ensemble as the teacher: MC-dropout soft labels through every member, no feature loss."""
    from matchms_neims.models import NeimsMLP
    from matchms_neims_training.commands.ensemble import build_ensemble

    mlp_config = {"input_size": 256, "hidden_size": 32, "n_blocks": 1, "max_mz": 500, "head": "formula",
                  "formula_head": {"hidden": 8}}
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(save_model(tmp_path / f"mlp{seed}.pt", NeimsMLP(**mlp_config).eval(), mlp_config,
                                  Featurizer(n_bits=256, formula=True), {"name": f"mlp{seed}"}, half_precision=True))
    teacher = build_ensemble(members, tmp_path / "ensemble.pt")
    args = ["train", "student", "--config", str(tiny_student_config), "--set", f"distill.teacher={teacher}",
            "--max-epochs", "1", "--no-progress"]
    assert main([*args, "--output-dir", str(tmp_path / "with_gamma")]) == 2  # no embedding to imitate
    with caplog.at_level("INFO"):
        assert main([*args, "--set", "distill.gamma=0", "--output-dir", str(tmp_path / "run")]) == 0
    assert "train_soft_loss=" in caplog.text and "train_feature_loss=" not in caplog.text
    student = NeimsPredictor(tmp_path / "run" / "model.pt")
    assert student.loaded.metadata["teacher"] == str(teacher)
    assert len(student.predict_spectra(["CCO", "Clc1ccccc1"])) == 2
