"""The formula head: rendering, fallback, training on the fixture, and the refit on all data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.featurize import Featurizer
from matchms_neims.models import NeimsMLP
from matchms_neims.models.formula_head import FormulaHead
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.subformulae import FORMULA_SIZE, enumerate_subformulae, formula_counts


def formula_model(head: str = "formula", seed: int = 0) -> tuple[NeimsMLP, dict]:
    torch.manual_seed(seed)
    config = {"input_size": 256, "hidden_size": 32, "n_blocks": 1, "max_mz": 500, "head": head,
              "formula_head": {"hidden": 16}}
    return NeimsMLP(**config).eval(), config


def inputs(featurizer: Featurizer, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    featurized = [featurizer(s) for s in smiles]
    return (torch.from_numpy(np.stack([f.features for f in featurized])),
            torch.tensor([f.info.nominal_mass for f in featurized]))


def test_spectrum_is_the_probability_weighted_sum_of_isotope_envelopes():
    head = FormulaHead(8, mode="formula", hidden=4, weighting="softmax").eval()
    for parameter in head.parameters():  # all scores 0: every subformula gets the same probability
        torch.nn.init.zeros_(parameter)
    counts = formula_counts(Chem.MolFromSmiles("ClC(Cl)(Cl)Cl"))
    with torch.inference_mode():
        rendered = head.formula_spectrum(torch.zeros(1, 8), torch.tensor(counts[None], dtype=torch.float32),
                                         torch.tensor([152]))[0].numpy()
    subformulae = enumerate_subformulae(counts)
    expected = np.zeros(501)
    for light, envelope in zip(subformulae.light_mass, subformulae.envelopes):
        expected[light : light + len(envelope)] += envelope / len(subformulae)
    np.testing.assert_allclose(rendered, expected / expected.max(), atol=1e-5)
    # amplitude weighting: every weight softplus(0) ** 2, the same sum without the base-peak scaling
    head.weighting = "amplitude"
    with torch.inference_mode():
        amplitude = head.formula_spectrum(torch.zeros(1, 8), torch.tensor(counts[None], dtype=torch.float32),
                                          torch.tensor([152]))[0].numpy()
    np.testing.assert_allclose(amplitude, expected * len(subformulae) * np.log(2) ** 2, atol=1e-5)
    # the molecular ion cluster of CCl4 keeps its 35Cl/37Cl pattern: 152, 154, 156, 158
    cluster = rendered[[152, 154, 156, 158]] / rendered[154]
    np.testing.assert_allclose(cluster, [0.781, 1.0, 0.480, 0.102], atol=0.02)


@pytest.mark.parametrize("head", ["formula", "mixed"])
def test_formula_models_predict_through_the_predictor(tmp_path, head):
    model, config = formula_model(head)
    featurizer = Featurizer(n_bits=256, formula=True)
    assert featurizer.size == 256 + FORMULA_SIZE
    path = save_model(tmp_path / f"{head}.pt", model, config, featurizer, {"name": head, "version": "0"})
    loaded = load_model(path)
    assert loaded.featurizer.formula and isinstance(loaded.model.head, FormulaHead)
    predictor = NeimsPredictor(path)
    spectra = predictor.predict_spectra(["Clc1ccccc1", "C[Hg]C", "CCO", "[H][H]"])
    assert len(spectra) == 4
    chloro, mercury, ethanol, hydrogen = spectra
    assert "non-hydrogen" in hydrogen.metadata["formula_head_fallback"] and hydrogen.peaks.mz.max() <= 2 + 5
    assert "formula_head_fallback" not in chloro.metadata and "formula_head_fallback" not in ethanol.metadata
    assert "isotope table" in mercury.metadata["formula_head_fallback"]
    assert chloro.peaks.mz.max() <= 112 + 23  # nothing beyond the molecular ion's envelope
    assert mercury.peaks.mz.max() <= 232 + 5  # fallback: nominal-mass candidates up to M + isotope margin
    if head == "formula":  # every peak is a subformula's isotope peak: none between C2H6O's envelope and m/z 500
        assert ethanol.peaks.mz.max() <= 46 + 1 + 23


def test_bidirectional_fallback_serves_only_molecules_over_the_bound():
    torch.manual_seed(0)
    nominal = FormulaHead(32, hidden=8).eval()
    routed = FormulaHead(32, hidden=8, fallback="bidirectional", fallback_training_fraction=0.5).eval()
    routed.load_state_dict({**routed.state_dict(), **nominal.state_dict()})  # same formula part
    smiles = ["Clc1ccccc1", "C[Hg]C", "CCO"]  # mercury has no isotope table: over the bound
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    formula = torch.tensor(np.stack([formula_counts(m) for m in mols]), dtype=torch.float32)
    masses = torch.tensor([112, 232, 46])
    embedding = torch.randn(3, 32)
    with torch.inference_mode():
        expected_formula = nominal(embedding, masses, formula)
        out = routed(embedding, masses, formula)
        bidirectional = routed.bidirectional(embedding, masses)
    torch.testing.assert_close(out[[0, 2]], expected_formula[[0, 2]])  # enumerated: the formula spectrum
    torch.testing.assert_close(out[1], bidirectional[1])  # over the bound: the bidirectional head's
    assert "bidirectional" in routed.fallback_reason(formula_counts(mols[1]))
    assert routed.fallback_reason(formula_counts(mols[0])) is None
    # training mode routes a seeded random part of the others too, and the bidirectional head always runs
    routed.train()
    rows = []
    for _ in range(2):
        torch.manual_seed(3)
        rows.append(routed._fallback_rows(routed._entries(formula.repeat(20, 1))[1]))
    np.testing.assert_array_equal(rows[0], rows[1])
    assert rows[0][1::3].all() and 0 < rows[0][0::3].sum() < 20  # mercury always, chlorobenzene about half
    loss = routed(embedding, masses, formula).sum()
    loss.backward()
    assert routed.bidirectional.forward_layer.weight.grad is not None


def test_fallback_options_are_checked():
    with pytest.raises(ValueError, match="fallback"):
        FormulaHead(8, fallback="nearest")
    with pytest.raises(ValueError, match="needs fallback='bidirectional'"):
        FormulaHead(8, fallback_training_fraction=0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FormulaHead(8, fallback="bidirectional", fallback_training_fraction=1.0)


def test_formula_model_files_cannot_be_exported(tmp_path):
    from matchms_neims.export import export_model

    model, config = formula_model()
    path = save_model(tmp_path / "f.pt", model, config, Featurizer(n_bits=256, formula=True), {"name": "f"})
    with pytest.raises(ValueError, match="formula head"):
        export_model(tmp_path / "f.onnx", "onnx", path)


def test_formula_head_trains_on_the_fixture(fixtures_dir):
    from matchms_neims.io import load_spectra
    from matchms_neims.spectra import spectrum_to_vector
    from matchms_neims_training.distillation.losses import batch_cosine, mass_weighted_mse

    featurizer = Featurizer(n_bits=256, formula=True)
    rows, targets = [], []
    for spectrum in load_spectra(fixtures_dir / "massbank_mini.msp")[:48]:
        try:
            rows.append(featurizer(spectrum.get("smiles")))
        except ValueError:
            continue
        targets.append(spectrum_to_vector(spectrum, 500))
    features = torch.from_numpy(np.stack([r.features for r in rows]))
    masses = torch.tensor([r.info.nominal_mass for r in rows])
    target = torch.from_numpy(np.stack(targets)).float()
    model, _ = formula_model()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        loss = mass_weighted_mse(model(features, masses), target, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    with torch.inference_mode():
        cosine = batch_cosine(model(features, masses), target.sqrt()).mean()
    assert cosine > 0.7  # 0.81 measured (0.61 for the bidirectional head in the same steps)


def test_refit_runs_end_to_end_on_the_fixture(tmp_path, tiny_training_config):
    from matchms_neims.cli import main
    from matchms_neims_training.data.cache import CacheMetadata

    config = tiny_training_config("baseline_formula.yaml", tmp_path)
    config.model.update(input_size=256, hidden_size=32, n_blocks=1, formula_head={"hidden": 16})
    config.featurizer.n_bits = 256
    config.optim.max_epochs = 2
    config.export.path = str(tmp_path / "run" / "model.pt")
    config_path = tmp_path / "formula.yaml"
    config.to_yaml(config_path)
    assert main(["train", "baseline", "--config", str(config_path), "--no-progress"]) == 0
    selection = load_model(config.export.path).metadata
    best_epoch = int(selection["best_epoch_checkpoint"].split("epoch=")[1][:3])

    assert main(["train", "baseline", "--config", str(config_path), "--refit", "--no-progress"]) == 0
    refit_path = Path(f"{config.trainer.output_dir}_refit") / "model.pt"
    refit = load_model(refit_path)
    assert refit.metadata["split"]["method"] == "all"
    assert refit.metadata["refit"]["epochs"] == best_epoch + 1
    assert refit.metadata["refit"]["selection_model"] == config.export.path
    assert "val_cosine" in refit.metadata["refit"]["selection_scores"]
    assert "val_cosine" not in refit.metadata  # no validation split in a refit
    cache = CacheMetadata(tmp_path / "cache.all.h5")
    assert (cache.split == 0).all() and len(cache.split) == len(CacheMetadata(tmp_path / "cache.h5").split)
    assert NeimsPredictor(refit_path).predict("Clc1ccccc1")["mz"].size > 0

    # evaluating the selection model on its own split is clean; the refit model has seen the test molecules
    for model_path, warned in ((config.export.path, False), (refit_path, True)):
        report_path = tmp_path / f"report_{warned}.json"
        assert main(["evaluate", "--model", str(model_path), "--config", str(config_path), "--timing-molecules", "0",
                     "--uncertainty-samples", "0", "-o", str(report_path)]) == 0
        report = json.loads(report_path.read_text())
        assert ("split_warning" in report) is warned
        assert {"element_class", "molecular_weight"} <= set(report["breakdowns"])
        assert "library_matching_mass_filter" in report


def test_student_takes_the_formula_head(tmp_path):
    from matchms_neims.models import StudentMoE

    torch.manual_seed(0)
    config = {"n_bits": 128, "n_count_bits": 64, "width": 32, "expert_inner": 32, "blocks_per_expert": 1,
              "gate_hidden": [16], "head_hidden": [32], "head": "mixed", "formula_head": {"hidden": 8}}
    model = StudentMoE(**config).eval()
    featurizer = Featurizer(kind="student_fingerprint", n_bits=128, n_count_bits=64, formula=True)
    features, masses = inputs(featurizer, ["Brc1ccccc1", "CCO"])
    assert features.shape[1] == 128 + 64 + FORMULA_SIZE
    with torch.inference_mode():
        output = model.forward_with_details(features, masses)
    assert output.spectrum.shape == (2, 501) and output.expert_weights.shape == (2, 4)
    path = save_model(tmp_path / "student.pt", model, config, featurizer, {"name": "s", "version": "0"})
    spectrum = NeimsPredictor(path).predict_spectra(["Brc1ccccc1"])[0]
    assert len(spectrum.metadata["expert_weights"]) == 4


def test_teacher_takes_the_formula_head_through_graph_formula(tmp_path):
    from matchms_neims.models.teacher import TeacherGNN

    torch.manual_seed(0)
    config = dict(atom_embedding_dim=16, bond_embedding_dim=16, hidden_size=32, n_layers=2, attention_hidden=16,
                  ecfp_size=256, ecfp_transform="log1p", ecfp_hidden=[64, 24], fusion_hidden=[64, 32],
                  head="formula", formula_head={"hidden": 8})
    featurizer = Featurizer("graph_ecfp_counts", n_bits=256, formula=True)
    graph = featurizer("Brc1ccccc1").features
    assert graph.formula.shape == (1, FORMULA_SIZE)
    path = save_model(tmp_path / "teacher.pt", TeacherGNN(**config).eval(), config, featurizer, {"name": "t"})
    predictor = NeimsPredictor(path, uncertainty_samples=3)
    spectra = predictor.predict_spectra(["Brc1ccccc1", "CCO"])
    assert [s.get("prediction_uncertainty") is not None for s in spectra] == [True, True]
    bromo = dict(zip(spectra[0].peaks.mz, spectra[0].peaks.intensities))
    # C6H5Br+. at 156/158: 79Br/81Br with 13C on top, whatever the untrained scores
    assert bromo.get(158.0, 0) > 0 and bromo.get(156.0, 0) > 0


def test_mixed_config_round_trips_and_bounds_the_neutral_loss(tmp_path):
    from matchms_neims_training.config import TrainConfig

    config = TrainConfig.from_yaml("training/configs/baseline_mixed.yaml")
    config.to_yaml(tmp_path / "mixed.yaml")
    assert TrainConfig.from_yaml(tmp_path / "mixed.yaml").to_dict() == config.to_dict()
    assert config.model["head"] == "mixed" and config.featurizer.formula is True
    head = FormulaHead(32, **config.model["formula_head"])
    assert head.loss_slack == 2
    counts = formula_counts(Chem.MolFromSmiles("CCO"))
    assert head.fallback_reason(counts) is None
