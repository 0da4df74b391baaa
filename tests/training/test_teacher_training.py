"""Teacher training: bond masking, augmentation, lazy molecule files, and tiny pretrain + fine-tune runs via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from matchms_neims.chemistry import MoleculeError, nominal_mass, parse_smiles
from matchms_neims.cli import main
from matchms_neims.featurize import Featurizer
from matchms_neims.metrics import uncertainty_calibration
from matchms_neims.predictor import NeimsPredictor
from matchms_neims_training.config import CONFIG_DIR, TrainConfig
from matchms_neims_training.data.augment import (
    SpectrumAugmenter,
    conformer_distances,
    isotope_nominal_shift,
    label_carbons,
    shift_spectrum_for_labels,
    smooth_spectra,
)
from matchms_neims_training.data.molecules import MoleculeFile
from matchms_neims_training.distillation.losses import bond_masking_loss, sample_bond_mask

TINY_TEACHER = dict(atom_embedding_dim=16, bond_embedding_dim=16, hidden_size=32, n_layers=2, attention_hidden=16,
                    ecfp_size=256, ecfp_hidden=[64, 32], fusion_hidden=[64, 32])


# ----------------------------------------------------------------------------------------- masking

def test_bond_mask_takes_both_directions_and_at_least_one_bond():
    graph = Featurizer(kind="graph")("CC(=O)Nc1ccc(O)cc1").features
    mask = sample_bond_mask(graph.edge_index, 0.3, torch.Generator().manual_seed(1))
    chosen = {tuple(edge) for edge in graph.edge_index[:, mask].t().tolist()}
    assert chosen and all((j, i) in chosen for i, j in chosen)
    assert sample_bond_mask(graph.edge_index, 0.0, torch.Generator().manual_seed(1)).sum() == 2  # one bond
    assert sample_bond_mask(graph.edge_index, 1.0).all()


def test_bond_masking_loss_decreases_on_a_toy_set():
    from torch_geometric.data import Batch

    from matchms_neims.models.teacher import TeacherGNN

    torch.manual_seed(0)
    featurizer = Featurizer(kind="graph")
    smiles = ["CCO", "CC=O", "C#N", "c1ccccc1", "C=CC=C", "CC(=O)O", "CCN", "C1CCCCC1", "N#CC#N", "O=C=O"]
    graph = Batch.from_data_list([featurizer(s).features for s in smiles])
    model = TeacherGNN(**TINY_TEACHER, dropout=0.0, drop_edge=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses, accuracies = [], []
    for step in range(60):
        mask = sample_bond_mask(graph.edge_index, 0.3, torch.Generator().manual_seed(step))
        loss, accuracy = bond_masking_loss(model.masked_bond_predictions(graph, mask), graph, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        accuracies.append(accuracy.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert np.mean(accuracies[-10:]) > np.mean(accuracies[:5])


# ------------------------------------------------------------------------------------ augmentation

def test_c13_mass_shift_comes_from_isotope_masses():
    assert isotope_nominal_shift(6, 13) == 1
    assert isotope_nominal_shift(1, 2) == 1


def test_label_carbons_sets_isotopes_and_mass():
    mol = parse_smiles("CCCC(=O)O")
    labelled = label_carbons(mol, 2, np.random.default_rng(0))
    assert sum(atom.GetIsotope() == 13 for atom in labelled.GetAtoms()) == 2
    assert nominal_mass(labelled) == nominal_mass(mol) + 2
    assert label_carbons(parse_smiles("O"), 1, np.random.default_rng(0)) is None


def test_shifted_spectrum_moves_the_molecular_ion_and_keeps_small_fragments():
    vector = np.zeros(101, dtype=np.float32)
    vector[[15, 45, 88]] = [0.4, 1.0, 0.3]  # M = 88
    one = shift_spectrum_for_labels(vector, 88, 1)
    assert one[88] == 0 and one[89] > 0  # the molecular ion always carries the label
    assert one[15] > one[16]  # a small fragment mostly keeps no label
    # m/z 45 keeps the label with probability 45/88 and becomes the base peak at 46; intensity is conserved
    assert one[46] == pytest.approx(1.0) and one[45] == pytest.approx((1 - 45 / 88) / (45 / 88))
    assert one.sum() * (45 / 88) == pytest.approx(vector.sum())
    two = shift_spectrum_for_labels(vector, 88, 2)
    assert two[90] > 0 and two[89] == 0 and two[88] == 0


def test_label_distribution_smoothing():
    vector = np.zeros((1, 50), dtype=np.float32)
    vector[0, 20] = 1.0
    smoothed = smooth_spectra(vector, 1.5)
    assert smoothed.max() == pytest.approx(1.0) and smoothed[0, 20] == 1.0
    assert 0 < smoothed[0, 21] < 1 and smoothed[0, 19] == pytest.approx(smoothed[0, 21])
    assert smooth_spectra(vector, 0) is vector


def test_conformer_distances_give_bond_lengths():
    mol = parse_smiles("CCO")
    distances = conformer_distances(mol, 3, seed=1)
    assert distances.shape == (3, 3)
    np.testing.assert_allclose(distances, distances.T, atol=1e-5)
    assert 1.3 < distances[0, 1] < 1.7 and 1.3 < distances[1, 2] < 1.6


def test_augmenter_labels_molecule_and_spectrum_consistently():
    augmenter = SpectrumAugmenter(c13_fraction=1.0, max_carbons=1)
    vector = np.zeros(60, dtype=np.float32)
    vector[[29, 31, 46]] = [0.3, 1.0, 0.5]  # ethanol, M = 46
    mol, target, mass = augmenter.label(parse_smiles("CCO"), vector, np.random.default_rng(0))
    assert mass == 47 and target[47] > 0 and target[46] == 0
    assert Featurizer(kind="graph").features_of_mol(mol).x[:, -1].sum() == 1
    assert SpectrumAugmenter(c13_fraction=0.0).label(parse_smiles("CCO"), vector, np.random.default_rng(0)) is None


# ------------------------------------------------------------------------------------ molecule files

def test_molecule_files_are_indexed_lazily(fixtures_dir, tmp_path):
    smi = MoleculeFile(fixtures_dir / "molecules_small.smi")
    assert Chem.MolToSmiles(smi.molecule(0)) == "CCO"  # comments and the SMILES header skipped
    csv = MoleculeFile(fixtures_dir / "molecules_small.csv")
    assert Chem.MolToSmiles(csv.molecule(2)) == "c1ccccc1"
    with pytest.raises(MoleculeError, match=r"molecules_small.csv record 4: unparsable SMILES"):
        csv.molecule(3)
    sdf_path = tmp_path / "two.sdf"
    with Chem.SDWriter(str(sdf_path)) as writer:
        for smiles in ("CCO", "c1ccccc1O"):
            writer.write(Chem.MolFromSmiles(smiles))
    sdf = MoleculeFile(sdf_path)
    assert len(sdf) == 2 and Chem.MolToSmiles(sdf.molecule(1)) == "Oc1ccccc1"
    assert len(MoleculeFile(fixtures_dir / "molecules_small.smi", max_molecules=2)) == 2


# ------------------------------------------------------------------------------------ calibration

def test_uncertainty_calibration_detects_informative_std():
    rng = np.random.default_rng(0)
    true = rng.random((40, 30)) ** 4
    std = rng.random((40, 30)) * 0.2
    noisy = np.sqrt(true) + std * rng.standard_normal((40, 30))
    report = uncertainty_calibration(noisy, std, true, np.full(40, 29))
    assert report["bin_spearman"] > 0.3 and report["bin_pearson"] > 0.3
    errors = [group["mean_abs_error"] for group in report["by_std_decile"]]
    assert len(errors) == 10 and errors[-1] > errors[0]


# ------------------------------------------------------------------------------------ configs + CLI

def test_teacher_configs_round_trip_and_override(tmp_path):
    for name in ("teacher_pretrain.yaml", "teacher_finetune.yaml"):
        config = TrainConfig.from_yaml(CONFIG_DIR / name)
        assert config.model_class == "TeacherGNN" and config.featurizer.kind.startswith("graph_ecfp")
        config.to_yaml(tmp_path / name)
        assert TrainConfig.from_yaml(tmp_path / name) == config
    finetune = TrainConfig.from_yaml(CONFIG_DIR / "teacher_finetune.yaml")
    assert finetune.optim.scheduler == "cosine_restarts" and finetune.optim.monitor == "val_recall_at_10"
    assert finetune.masking.lambda_bond == 0.0 and finetune.augment.c13_fraction == 0.05
    changed = finetune.with_overrides(["optim.lr=3e-4", "model.dropout=0.2"])
    assert changed.optim.lr == 3e-4 and changed.model["dropout"] == 0.2
    with pytest.raises(ValueError, match="nosuch"):
        finetune.with_overrides(["nosuch.key=1"])
    assert finetune.init_sources() == ["runs/teacher_pretrain/pretrained.pt"]
    both = finetune.with_overrides(["init_from=[a.pt, b.pt]"])
    assert both.init_sources() == ["a.pt", "b.pt"] and TrainConfig.from_dict(both.to_dict()) == both
    assert finetune.with_overrides(["init_from=''"]).init_sources() == []


@pytest.fixture(scope="module")
def tiny_teacher_config(tmp_path_factory, tiny_training_config, fixtures_dir) -> Path:
    root = tmp_path_factory.mktemp("teacher")
    config = tiny_training_config("teacher_finetune.yaml", root)
    config.model.update(TINY_TEACHER)
    config.featurizer.n_bits = 256
    config.pretraining.molecules = [str(fixtures_dir / "molecules_small.smi")]
    config.pretraining.val_fraction = 0.2
    config.pretraining.conformers = 2
    config.optim.max_epochs = 1
    config.masking.lambda_bond = 0.1
    config.augment.c13_fraction = 0.3
    config.augment.lds_sigma = 1.0
    config.init_from = str(root / "pretrain" / "model.pt")
    config.export.path = str(root / "run" / "model.pt")
    config.export.name = "tiny-teacher"
    path = root / "tiny_teacher.yaml"
    config.to_yaml(path)
    return path


def test_pretrain_then_fine_tune_one_epoch_end_to_end(tiny_teacher_config, tmp_path, capsys):
    config = TrainConfig.from_yaml(tiny_teacher_config)
    pretrain_dir = Path(config.init_from).parent
    assert main(["train", "teacher-pretrain", "--config", str(tiny_teacher_config), "--output-dir",
                 str(pretrain_dir), "--set", "optim.monitor=val_bond_accuracy", "--no-progress"]) == 0
    pretrained = NeimsPredictor(config.init_from)
    assert pretrained.loaded.metadata["val_bond_accuracy"] is not None

    assert main(["train", "teacher", "--config", str(tiny_teacher_config), "--no-progress"]) == 0
    teacher = NeimsPredictor(config.export.path)
    assert teacher.loaded.model_class == "TeacherGNN" and teacher.model_name == "tiny-teacher"
    assert teacher.loaded.metadata["initialised_from"] == config.init_from
    assert teacher.loaded.metadata["val_recall_at_10"] is not None
    # the pretrained encoder was the starting point: its weights moved, but from there
    assert not torch.equal(teacher.loaded.model.layers[0].conv.nn[0].weight,
                           pretrained.loaded.model.layers[0].conv.nn[0].weight)

    spectra = NeimsPredictor(config.export.path, uncertainty_samples=5).predict_spectra(["CCO", "nonsense", "CCN"])
    assert len(spectra) == 2 and all(s.get("prediction_uncertainty") > 0 for s in spectra)
    library = tmp_path / "teacher_library.msp"
    assert main(["predict", str(Path(config.pretraining.molecules[0])), "-o", str(library), "--model",
                 config.export.path, "--uncertainty", "3"]) == 0
    assert library.read_text().count("prediction_uncertainty: ") == library.read_text().count("Num Peaks:") > 0

    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--model", config.export.path, "--config", str(tiny_teacher_config), "--split", "test",
                 "--timing-molecules", "3", "--uncertainty-samples", "4", "-o", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    calibration = report["uncertainty_calibration"]
    assert calibration["mc_dropout_samples"] == 4 and -1 <= calibration["bin_spearman"] <= 1
    assert len(calibration["by_std_decile"]) == 10
    assert "MC-dropout uncertainty" in capsys.readouterr().out
