"""NeimsPredictor on a few SMILES (a small untrained model; the bundled model is tested separately)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from matchms import Spectrum

from matchms_neims.chemistry import MoleculeError
from matchms_neims.io import as_molecule_input
from matchms_neims.predictor import NeimsPredictor, bundled_model_path


def test_predict_one(tiny_predictor):
    peaks = tiny_predictor.predict("CCO")
    assert set(peaks) == {"mz", "intensity"}
    assert peaks["intensity"].max() == pytest.approx(1.0)
    assert peaks["mz"].max() <= 46 + 5  # nothing above M+5
    assert np.all(np.diff(peaks["mz"]) > 0)


def test_predict_is_deterministic(tiny_predictor):
    a, b = tiny_predictor.predict("c1ccccc1O"), tiny_predictor.predict("c1ccccc1O")
    np.testing.assert_array_equal(a["intensity"], b["intensity"])


def test_predict_errors_name_the_reason(tiny_predictor):
    with pytest.raises(MoleculeError, match="unparsable SMILES"):
        tiny_predictor.predict("C1CC")
    with pytest.raises(MoleculeError, match="above the model's range"):
        tiny_predictor.predict("C" * 40)


def test_predict_spectra_metadata_and_skipping(tiny_predictor, caplog):
    inputs = ["CCO", ("Cc1ccccc1", "toluene"), {"smiles": "not a smiles", "compound_name": "broken"},
              {"smiles": "CC(C)=O", "compound_name": "acetone"},
              Spectrum(mz=np.array([10.0]), intensities=np.array([1.0]), metadata={"smiles": "c1ccccc1"},
                       metadata_harmonization=False)]
    with caplog.at_level(logging.WARNING):
        spectra = tiny_predictor.predict_spectra(inputs, batch_size=2)
    assert [s.get("compound_name") for s in spectra][1:3] == ["toluene", "acetone"]
    assert len(spectra) == 4
    assert [str(e) for e in tiny_predictor.last_errors] == ["broken: unparsable SMILES 'not a smiles'"]
    toluene = spectra[1]
    assert toluene.get("inchikey") == "YXFVVABEGXRONW-UHFFFAOYSA-N"
    assert toluene.get("formula") == "C7H8"
    assert toluene.get("nominal_mass") == 92
    assert toluene.get("smiles") == "Cc1ccccc1"
    assert toluene.get("predicted") is True
    assert toluene.get("model_name") == "tiny" and toluene.get("model_version") == "0.0"
    assert "precursor" not in caplog.text.lower()
    with pytest.raises(MoleculeError):
        tiny_predictor.predict_spectra(["C1CC"], on_error="raise")


def test_salt_is_reduced_to_its_largest_fragment(tiny_predictor):
    (spectrum,) = tiny_predictor.predict_spectra(["CCN.Cl"])
    assert spectrum.get("smiles") == "CCN" and spectrum.get("nominal_mass") == 45
    assert spectrum.get("input_smiles") == "CCN.Cl"


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        NeimsPredictor(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a matchms-neims model"):
        NeimsPredictor(tmp_path / "junk.pt")


@pytest.mark.skipif(not bundled_model_path().is_file(), reason="bundled model not built yet")
def test_bundled_model_predicts_ethanol_and_chlorine_isotopes():
    from matchms_neims import NeimsPredictor as PublicPredictor

    predictor = PublicPredictor()
    assert predictor.model_name == "neims-formula-distilled"
    peaks = predictor.predict("CCO")
    top = peaks["mz"][np.argsort(peaks["intensity"])[::-1][:3]]
    assert 31 in top  # CH2OH+, the base peak of ethanol's EI spectrum
    # chlorobenzene C6H5Cl+. at 112 with its 37Cl partner at 114 (35Cl/37Cl = 3.1:1), from the formula head
    chloro = dict(zip(*predictor.predict("Clc1ccccc1").values()))
    assert 0.25 < chloro[114.0] / chloro[112.0] < 0.45


@pytest.mark.skipif(not bundled_model_path().with_name("neims_student.pt").is_file(), reason="student not built")
def test_bundled_student_gives_expert_weights():
    predictor = NeimsPredictor(bundled_model_path().with_name("neims_student.pt"))
    assert predictor.model_name == "neims-student"
    weights = predictor.predict("CCO")["expert_weights"]  # the student is a mixture of experts
    assert weights.shape == (4,) and (weights > 0).sum() == 2 and weights.sum() == pytest.approx(1, abs=1e-3)


def test_featurize_workers_give_the_same_predictions_and_errors():
    import pickle

    import torch

    error = pickle.loads(pickle.dumps(MoleculeError("record 3", "unparsable SMILES 'C1'")))
    assert (error.record, error.reason) == ("record 3", "unparsable SMILES 'C1'")  # comes back from workers
    smiles = ["CCO", "C1", "c1ccccc1O", "", "CC(=O)Nc1ccc(O)cc1", "C" * 40, "CCN", "[Na+].[Cl-]", "CCCCCC(=O)O",
              "OC1CCCCC1", "CCOC(C)=O"] * 3
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the same BLAS threads on both sides, so the sums are bitwise equal
    try:
        plain = NeimsPredictor(batch_size=4).predict_batch(smiles)
        with NeimsPredictor(batch_size=4, featurize_workers=1) as predictor:
            predictor.predict_batch(smiles)
            assert predictor._pool is None  # too few molecules to start a worker for
            predictor.min_molecules_for_workers = 8
            pooled = predictor.predict_batch(smiles)
            assert predictor._pool is not None
        assert predictor._pool is None  # closed
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(pooled.vectors, plain.vectors)
    np.testing.assert_array_equal(pooled.expert_weights, plain.expert_weights)
    assert pooled.infos == plain.infos and [m.record for m in pooled.molecules] == [m.record for m in plain.molecules]
    assert [str(e) for e in pooled.errors] == [str(e) for e in plain.errors] and len(plain.errors) == 9
    with pytest.raises(ValueError, match="featurize_workers"):
        NeimsPredictor(featurize_workers=-1)


def test_predict_batches_streams_what_predict_batch_gives(tiny_predictor):
    batches = [["CCO", "C1", "c1ccccc1O"], [], ["CC(=O)C", "CCN"], ["not a smiles"], ["CCCCCC(=O)O"] * 5]
    expected = [tiny_predictor.predict_batch(batch) for batch in batches]
    streams = [tiny_predictor.predict_batches(iter(batches))]
    pooled = NeimsPredictor(tiny_predictor.loaded, batch_size=2, featurize_workers=1)
    pooled.min_molecules_for_workers = 2
    streams.append(pooled.predict_batches(batches))
    try:
        for stream in streams:
            got = list(stream)
            assert len(got) == len(batches)
            for result, reference in zip(got, expected):
                np.testing.assert_allclose(result.vectors, reference.vectors, rtol=0, atol=1e-6)
                assert result.infos == reference.infos
                assert [str(e) for e in result.errors] == [str(e) for e in reference.errors]
    finally:
        pooled.close()


def test_one_bad_item_in_a_python_batch_is_skipped_not_fatal(tiny_predictor):
    items = ["CCO", None, float("nan"), 42, b"c1ccccc1", ("CCC", "propane"), (None, "nothing"), "OCC(O)CO"]
    spectra = tiny_predictor.predict_spectra(items)
    assert [s.get("smiles") for s in spectra] == ["CCO", "c1ccccc1", "CCC", "OCC(O)CO"]
    reasons = {error.record: error.reason for error in tiny_predictor.last_errors}
    assert reasons == {"record 2": "no SMILES given (None)", "record 3": "no SMILES given (nan)",
                       "record 4": "cannot read a molecule from int '42'", "nothing": "no SMILES given (None)"}
    # a plain string is one molecule, not one per character
    assert [s.get("smiles") for s in tiny_predictor.predict_spectra("CCO")] == ["CCO"]
    for batch_size in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            tiny_predictor.predict_spectra(["CCO"], batch_size=batch_size)


def test_the_torch_backend_runs_the_model_and_the_metadata_function_names_the_model(tiny_predictor):
    from matchms_neims.backends import TorchBackend, make_backend
    from matchms_neims.predicted_metadata import predicted_spectrum_metadata

    assert isinstance(tiny_predictor.inference_backend, TorchBackend) and tiny_predictor.backend == "torch"
    positions, featurized, problems = tiny_predictor.featurize([as_molecule_input("c1ccccc1Cl", 0)])
    assert positions == [0] and not problems
    inputs, masses = tiny_predictor._model_inputs(featurized)
    with torch.inference_mode():
        sqrt_intensity = make_backend("torch", tiny_predictor.loaded).run(inputs, masses)[0][0]
    intensity = np.square(sqrt_intensity.clamp_min(0).numpy())
    assert np.allclose(tiny_predictor.predict_features(featurized)[0], intensity / intensity.max())
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        make_backend("tensorrt", tiny_predictor.loaded)

    info = featurized[0].info
    metadata = predicted_spectrum_metadata(as_molecule_input(("c1ccccc1Cl", "chlorobenzene"), 0), info, "m", "2",
                                           formula_head_fallback="too many subformulae")
    assert (metadata["spectrum_id"], metadata["compound_name"], metadata["formula"]) == (
        f"m:{info.inchikey}", "chlorobenzene", "C6H5Cl")
    assert metadata["model_version"] == "2" and metadata["formula_head_fallback"] == "too many subformulae"
    assert "prediction_uncertainty" not in metadata and "expert_weights" not in metadata


def test_distillation_embeddings_follow_the_declared_size(tiny_predictor, tmp_path):
    from matchms_neims.checkpoint import save_model
    from matchms_neims.featurize import Featurizer
    from matchms_neims.models.teacher import TeacherGNN

    _, featurized, _ = tiny_predictor.featurize([as_molecule_input(s, i) for i, s in enumerate(["CCO", "c1ccccc1Cl"])])
    assert tiny_predictor.loaded.model.distillation_embedding_size == 0
    assert tiny_predictor.distillation_embeddings(featurized) is None  # a baseline MLP has no embedding
    with pytest.raises(ValueError, match="declares no distillation embedding"):
        tiny_predictor.loaded.model.distillation_embedding(torch.zeros(1, 4))

    config = dict(atom_embedding_dim=8, bond_embedding_dim=8, hidden_size=8, n_layers=1, attention_hidden=8,
                  ecfp_size=64, ecfp_hidden=(16, 12), fusion_hidden=(16,), max_mz=200)
    torch.manual_seed(0)
    path = save_model(tmp_path / "teacher.pt", TeacherGNN(**config).eval(), config,
                      Featurizer("graph_ecfp_counts", max_mz=200, n_bits=64))
    teacher = NeimsPredictor(path)
    _, featurized, _ = teacher.featurize([as_molecule_input(s, i) for i, s in enumerate(["CCO", "c1ccccc1Cl", "CCN"])])
    whole = teacher.distillation_embeddings(featurized)
    assert whole.shape == (3, 12) and whole.dtype == np.float32
    assert np.allclose(teacher.distillation_embeddings(featurized, batch_size=2), whole, atol=1e-6)  # chunked alike
    assert teacher.distillation_embeddings([]).shape == (0, 12)
