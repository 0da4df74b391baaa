"""ONNX and TorchScript export: same spectra (and expert weights) as PyTorch, dynamic batch, metadata, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.cli import main
from matchms_neims.export import export_model, read_export_metadata, reference_inputs, run_exported
from matchms_neims.featurize import Featurizer
from matchms_neims.models.student import StudentMoE
from matchms_neims.predictor import NeimsPredictor, bundled_model_path

pytest.importorskip("onnxruntime")

TINY_STUDENT = dict(n_bits=256, n_count_bits=128, width=32, expert_inner=48, n_experts=4, top_k=2,
                    blocks_per_expert=2, gate_hidden=(32, 16), head_hidden=(64, 32), max_mz=200)
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@pytest.fixture(scope="module")
def student_path(tmp_path_factory):
    torch.manual_seed(3)
    model = StudentMoE(**TINY_STUDENT)
    model.gate_bias.copy_(torch.tensor([0.2, -0.1, 0.0, 0.1]))
    featurizer = Featurizer("student_fingerprint", max_mz=200, n_bits=256, n_count_bits=128)
    return save_model(tmp_path_factory.mktemp("export") / "student.pt", model, TINY_STUDENT, featurizer,
                      {"name": "tiny-student"})


def _molecule_inputs(loaded, smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
    featurized = [loaded.featurizer(item) for item in smiles]
    return (np.stack([item.features for item in featurized]).astype(np.float32),
            np.array([item.info.nominal_mass for item in featurized], dtype=np.int64))


@pytest.mark.parametrize("file_format", ["onnx", "torchscript"])
def test_student_export_matches_pytorch_with_expert_weights(student_path, tmp_path, file_format):
    output = tmp_path / f"student{SUFFIX[file_format]}"
    result = export_model(output, file_format, student_path)
    assert result["outputs"] == ["spectrum", "expert_weights"] and max(result["max_abs_difference"].values()) <= 1e-4
    loaded = load_model(student_path)
    # molecules and batch sizes other than the ones traced: routing stays data-dependent in the exported graph
    smiles = ["CCCCO", "c1ccc2ccccc2c1", "O=C(O)c1ccccc1", "CCN(CC)CC", "ClCCl", "CC(C)(C)c1ccc(O)cc1"]
    fingerprint, mass = _molecule_inputs(loaded, smiles)
    for rows in (slice(0, 1), slice(None)):
        spectrum, weights = run_exported(output, file_format, fingerprint[rows], mass[rows])
        with torch.no_grad():
            expected = loaded.model.forward_with_details(torch.from_numpy(fingerprint[rows]),
                                                         torch.from_numpy(mass[rows]))
        np.testing.assert_allclose(spectrum, expected.spectrum.numpy(), atol=1e-4)
        np.testing.assert_allclose(weights, expected.expert_weights.numpy(), atol=1e-4)
        assert ((weights > 0).sum(axis=1) == 2).all()
    metadata = read_export_metadata(output, file_format)
    assert metadata["featurizer"] == loaded.featurizer.to_config() and metadata["model_class"] == "StudentMoE"
    assert metadata["metadata"]["name"] == "tiny-student" and metadata["output_space"] == "sqrt_intensity"


@pytest.mark.parametrize("file_format", ["onnx", "torchscript"])
def test_bundled_models_export_through_the_cli(tmp_path, file_format, capsys):
    baseline = bundled_model_path().with_name("neims_baseline.pt")
    student = bundled_model_path().with_name("neims_student.pt")
    for model, outputs in ((student, ["spectrum", "expert_weights"]), (baseline, ["spectrum"])):
        output = tmp_path / f"model{SUFFIX[file_format]}"
        format_option = ["--format", "torchscript"] if file_format == "torchscript" else []
        assert main(["export", "-o", str(output), *format_option, "--model", str(model)]) == 0
        assert f"{file_format} model written to" in capsys.readouterr().out
        loaded = load_model(model)
        fingerprint, mass = reference_inputs(loaded)
        exported = run_exported(output, file_format, fingerprint.numpy()[:5], mass.numpy()[:5])
        with torch.no_grad():
            np.testing.assert_allclose(exported[0], loaded.model(fingerprint[:5], mass[:5]).numpy(), atol=1e-4)
        assert read_export_metadata(output, file_format)["outputs"] == outputs


def test_the_default_formula_model_is_refused_by_the_onnx_backends_with_the_reason():
    with pytest.raises(ValueError, match="formula head.*torch backend"):
        NeimsPredictor(backend="onnx")


def test_refusals_leave_no_file(student_path, tmp_path):
    from matchms_neims.models.teacher import TeacherGNN

    small = dict(atom_embedding_dim=8, bond_embedding_dim=8, hidden_size=16, n_layers=1, attention_hidden=8,
                 ecfp_size=64, ecfp_hidden=[16, 8], fusion_hidden=[16], max_mz=200)
    teacher = save_model(tmp_path / "teacher.pt", TeacherGNN(**small), small, Featurizer("graph_ecfp", max_mz=200,
                                                                                         n_bits=64))
    with pytest.raises(ValueError, match="only fingerprint models"):
        export_model(tmp_path / "teacher.onnx", "onnx", teacher)
    with pytest.raises(ValueError, match="opset 13 is too old"):
        export_model(tmp_path / "old.onnx", "onnx", student_path, opset=13)
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(tmp_path / "model.tflite", "tflite", student_path)
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_model(tmp_path / "strict.onnx", "onnx", student_path, tolerance=-1.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["teacher.pt"]
    assert main(["export", "-o", str(tmp_path / "teacher.onnx"), "--model", str(teacher)]) == 2


def test_onnx_backend_predicts_like_torch(student_path, tmp_path):
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "nonsense", "ClCCl"]
    bundled_student = bundled_model_path().with_name("neims_student.pt")
    for model in (student_path, bundled_student):  # the tiny and the bundled student (both with expert weights)
        reference = NeimsPredictor(model).predict_batch(smiles)
        onnx = NeimsPredictor(model, backend="onnx", threads=1).predict_batch(smiles)
        assert [m.smiles for m in onnx.molecules] == [m.smiles for m in reference.molecules] and len(onnx.errors) == 1
        np.testing.assert_allclose(onnx.vectors, reference.vectors, atol=1e-4)
        if reference.expert_weights is not None:
            np.testing.assert_allclose(onnx.expert_weights, reference.expert_weights, atol=1e-4)
    single = NeimsPredictor(student_path, backend="onnx").predict("c1ccccc1O")
    assert single["expert_weights"].shape == (4,) and len(single["mz"]) > 0
    with pytest.raises(ValueError, match="unknown backend"):
        NeimsPredictor(student_path, backend="tensorrt")
    library = tmp_path / "library.msp"
    molecules = tmp_path / "molecules.smi"
    molecules.write_text("CCO ethanol\nc1ccccc1O phenol\n")
    assert main(["predict", str(molecules), "-o", str(library), "--backend", "onnx", "--model", str(student_path)]) == 0
    assert library.read_text().count("Num Peaks") == 2


def test_int8_backend_is_close_to_torch_and_checked(student_path, monkeypatch):
    from matchms_neims import export
    from matchms_neims.metrics import paired_cosine

    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "ClCCl", "CCCCCCCCCC(=O)OC"]
    for model in (student_path, bundled_model_path().with_name("neims_student.pt")):
        reference = NeimsPredictor(model).predict_batch(smiles)
        int8 = NeimsPredictor(model, backend="onnx-int8", threads=1).predict_batch(smiles)
        cosines = paired_cosine(int8.vectors, reference.vectors, 1.0, 0.5)
        assert cosines.min() > 0.98
    # a quantised model that drifts too far is refused
    monkeypatch.setattr(export, "_quantized_int8", lambda model_bytes: _scrambled(model_bytes))
    with pytest.raises(ValueError, match="int8 ONNX version"):
        NeimsPredictor(student_path, backend="onnx-int8")


def _scrambled(model_bytes: bytes) -> bytes:
    """The model with every float weight replaced by noise (what a broken quantisation could give)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    rng = np.random.default_rng(0)
    for index, tensor in enumerate(model.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32 and values.size > 100:
            model.graph.initializer[index].CopyFrom(
                numpy_helper.from_array(rng.normal(size=values.shape).astype(np.float32), tensor.name))
    return model.SerializeToString()
