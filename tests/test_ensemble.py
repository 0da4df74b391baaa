"""Ensembles: the teacher ensemble (averaging, mixture uncertainty), formula-head MLP ensembles (intensity
average), building them from model files, predicting with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_formula_head import formula_model
from test_formula_head import inputs as formula_inputs

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.cli import main
from matchms_neims.featurize import Featurizer
from matchms_neims.models.ensemble import SpectrumEnsemble, TeacherEnsemble
from matchms_neims.models.neims import NeimsMLP
from matchms_neims.models.teacher import TeacherGNN
from matchms_neims.predictor import NeimsPredictor
from matchms_neims_training.commands.ensemble import build_ensemble

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
SMALL = dict(atom_embedding_dim=16, bond_embedding_dim=8, hidden_size=32, n_layers=2, attention_hidden=16,
             ecfp_size=256, ecfp_hidden=[64, 32], fusion_hidden=[64, 32], max_mz=200)
FEATURIZER = Featurizer("graph_ecfp_counts", max_mz=200, n_bits=256)
METADATA = {"training_data": "massbank.msp", "split": {"method": "random", "seed": 42}}


@pytest.fixture
def inputs():
    molecules = [FEATURIZER(smi) for smi in SMILES]
    graph, ecfp = FEATURIZER.collate([m.features for m in molecules])
    return graph, ecfp, torch.tensor([m.info.nominal_mass for m in molecules])


def _members(n: int = 2, **changes) -> list[TeacherGNN]:
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(TeacherGNN(**{**SMALL, **changes}).eval())
    return models


def _ensemble(members: list[TeacherGNN], weights=None) -> TeacherEnsemble:
    ensemble = TeacherEnsemble([SMALL] * len(members), weights).eval()
    for target, source in zip(ensemble.members, members):
        target.load_state_dict(source.state_dict())
    return ensemble


def test_spectrum_is_the_weighted_mean_of_the_members(inputs):
    members = _members()
    ensemble = _ensemble(members, weights=[3, 1])
    with torch.no_grad():
        spectra = [member(*inputs) for member in members]
        out = ensemble.forward_with_details(*inputs)
        first = members[0].forward_with_details(*inputs)
    torch.testing.assert_close(out.spectrum, 0.75 * spectra[0] + 0.25 * spectra[1])
    torch.testing.assert_close(out.ecfp_embedding, first.ecfp_embedding)
    assert ensemble.max_mz == 200 and ensemble.weights == [0.75, 0.25]
    assert ensemble.distillation_embedding_size == members[0].distillation_embedding_size == 32


def test_mixture_uncertainty_counts_member_disagreement(inputs):
    members = _members()
    ensemble = _ensemble(members)
    mean, std = ensemble.predict_with_uncertainty(*inputs, n_samples=8, seed=5)
    means, stds = zip(*(member.predict_with_uncertainty(*inputs, n_samples=8, seed=5 + i)
                        for i, member in enumerate(members)))
    torch.testing.assert_close(mean, (means[0] + means[1]) / 2)
    expected = ((stds[0] ** 2 + stds[1] ** 2) / 2 + ((means[0] - means[1]) / 2) ** 2).sqrt()
    torch.testing.assert_close(std, expected, atol=1e-5, rtol=1e-4)
    assert (std**2 > (stds[0] ** 2 + stds[1] ** 2) / 2 + 1e-4).any()  # the members disagree: more than MC noise
    again_mean, again_std = ensemble.predict_with_uncertainty(*inputs, n_samples=8, seed=5)
    assert torch.equal(again_mean, mean) and torch.equal(again_std, std)  # seeded: repeatable


def test_invalid_ensembles_are_refused():
    with pytest.raises(ValueError, match="at least one member"):
        TeacherEnsemble([])
    with pytest.raises(ValueError, match="one non-negative weight per member"):
        TeacherEnsemble([SMALL, SMALL], weights=[1.0])
    with pytest.raises(ValueError, match="different m/z ranges"):
        TeacherEnsemble([SMALL, {**SMALL, "max_mz": 300}])


def test_build_from_model_files_then_predict_and_evaluate_like_any_model(inputs, tmp_path):
    paths = []
    for index, member in enumerate(_members()):
        paths.append(save_model(tmp_path / f"teacher{index}.pt", member, SMALL, FEATURIZER,
                                {**METADATA, "name": f"t{index}", "val_recall_at_10": 0.5 + index / 10}))
    output = tmp_path / "ensemble.pt"
    assert main(["ensemble", *map(str, paths), "-o", str(output)]) == 0
    loaded = load_model(output)
    assert loaded.model_class == "TeacherEnsemble" and loaded.metadata["split"] == METADATA["split"]
    assert [member["name"] for member in loaded.metadata["members"]] == ["t0", "t1"]
    reference = _ensemble(_members())
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(*inputs), reference(*inputs))

    predictor = NeimsPredictor(output)
    assert predictor.supports_uncertainty
    batch = predictor.predict_batch(SMILES, uncertainty_samples=4)
    assert batch.vectors.shape == (3, 201) and np.all(batch.sqrt_std >= 0) and batch.sqrt_std.max() > 0


def test_members_must_share_featurizer_class_and_split(tmp_path):
    first, second = _members()
    good = save_model(tmp_path / "a.pt", first, SMALL, FEATURIZER, METADATA)
    with pytest.raises(ValueError, match="at least two member files"):
        build_ensemble([good], tmp_path / "out.pt")
    other_split = save_model(tmp_path / "b.pt", second, SMALL, FEATURIZER,
                             {**METADATA, "split": {"method": "scaffold", "seed": 42}})
    with pytest.raises(ValueError, match="share data and split"):
        build_ensemble([good, other_split], tmp_path / "out.pt")
    other_featurizer = save_model(tmp_path / "c.pt", second, SMALL,
                                  Featurizer("graph_ecfp_counts", max_mz=200, n_bits=256, radius=3), METADATA)
    with pytest.raises(ValueError, match="share one featurizer"):
        build_ensemble([good, other_featurizer], tmp_path / "out.pt")
    baseline_config = {"input_size": 256, "hidden_size": 16, "n_blocks": 1, "max_mz": 200}
    baseline = save_model(tmp_path / "d.pt", NeimsMLP(**baseline_config), baseline_config,
                          Featurizer("neims_count_ecfp", max_mz=200, n_bits=256), METADATA)
    with pytest.raises(ValueError, match="must be TeacherGNN"):
        build_ensemble([good, baseline], tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_formula_members_average_intensities_and_keep_their_envelopes(tmp_path):
    featurizer = Featurizer(n_bits=256, formula=True)
    (first, config), (second, _) = formula_model(seed=0), formula_model(seed=1)
    for model in (first, second):  # candidates of trained size (the untrained bias makes them all about 0.002)
        torch.nn.init.constant_(model.head.forward_logits.bias, 3.0)
    metadata = {**METADATA, "name": "f"}
    paths = [save_model(tmp_path / f"f{index}.pt", model, config, featurizer, metadata, half_precision=True)
             for index, model in enumerate([first, second])]
    output = tmp_path / "formula_ensemble.pt"
    assert main(["ensemble", *map(str, paths), "-o", str(output), "--weights", "3", "1"]) == 0
    loaded = load_model(output)
    assert loaded.model_class == "SpectrumEnsemble" and loaded.model_config["average"] == "intensity"
    # float16 members stay float16: the ensemble is the size of its members, not twice that
    assert output.stat().st_size < 1.1 * sum(path.stat().st_size for path in paths)
    ensemble = loaded.model
    assert isinstance(ensemble, SpectrumEnsemble) and ensemble.formula_head is not None
    assert ensemble.supports_uncertainty and not ensemble.has_expert_weights and ensemble.export_obstacle

    fingerprint, mass = formula_inputs(featurizer, ["ClC(Cl)(Cl)Cl", "BrCCBr", "CCO"])
    with torch.no_grad():
        members = [member(fingerprint, mass).square() for member in ensemble.members]
        expected = sum(weight * spectrum / spectrum.amax(dim=1, keepdim=True)
                       for weight, spectrum in zip([0.75, 0.25], members))
        torch.testing.assert_close(ensemble(fingerprint, mass).square(), expected, atol=1e-5, rtol=1e-4)
        # CCl4's molecular ion (m/z 152-158, no other subformula there) keeps its exact 35Cl/37Cl envelope in the
        # ensemble as in every member; a mean of the members' sqrt spectra would not keep it
        exact = torch.tensor([0.781, 1.0, 0.480, 0.102])
        for spectrum in [*members, ensemble(fingerprint, mass).square()]:
            torch.testing.assert_close(spectrum[0, [152, 154, 156, 158]] / spectrum[0, 154], exact, atol=0.02, rtol=0)

    predictor = NeimsPredictor(output)
    batch = predictor.predict_batch(["ClC(Cl)(Cl)Cl", "CCO"], uncertainty_samples=4)  # every member's dropout
    assert batch.sqrt_std.shape == (2, 501) and batch.sqrt_std.max() > 0
    spectra = predictor.predict_spectra(["Clc1ccccc1", "C[Hg]C"])
    assert "formula_head_fallback" not in spectra[0].metadata
    assert "isotope table" in spectra[1].metadata["formula_head_fallback"]


def test_members_must_be_one_class_of_spectrum_model(tmp_path):
    teacher, = _members(1)
    mlp, config = formula_model()
    paths = [save_model(tmp_path / "t.pt", teacher, SMALL, FEATURIZER, METADATA),
             save_model(tmp_path / "m.pt", mlp, config, Featurizer(n_bits=256, formula=True), METADATA)]
    with pytest.raises(ValueError, match="must be TeacherGNN models"):
        build_ensemble(paths, tmp_path / "out.pt")
    with pytest.raises(ValueError, match="averages sqrt spectra"):
        build_ensemble([paths[0], paths[0]], tmp_path / "out.pt", average="intensity")
