"""Export fingerprint models (NEIMS baseline, student) to ONNX or TorchScript for deployment without this package.

The exported graph takes the model's fingerprint ``(batch, n_features)`` float32 and the nominal
molecular mass ``(batch,)`` int64, and returns the predicted spectrum ``(batch, max_mz + 1)`` in
sqrt-intensity space (square it for relative intensities; base peak not yet scaled to 1), plus the
``(batch, n_experts)`` expert weights for the mixture-of-experts student. The batch axis is dynamic.
The featurizer settings (to compute the fingerprint the same way) and the model's metadata travel
inside the file: ONNX ``metadata_props`` and a TorchScript extra file, both named ``matchms_neims``
(JSON).

Every export is checked: the exported model runs on fingerprints of reference molecules, at batch
sizes 1 and several, and must give the PyTorch model's outputs to ``tolerance``, or the file is not
written. Graph models (the teacher) read PyTorch Geometric batches and are not exportable.
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from matchms_neims.checkpoint import LoadedModel, bundled_model_path, load_model
from matchms_neims.chemistry import MoleculeError
from matchms_neims.metrics import paired_cosine
from matchms_neims.utils import atomic_path

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
METADATA_KEY = "matchms_neims"
#: Molecules whose fingerprints check an export (small to large, aromatic, aliphatic, heteroatoms).
REFERENCE_SMILES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C",
                    "CCCCCCCCCCCCCCCC(=O)OC", "Clc1ccc(cc1)C(c1ccc(Cl)cc1)C(Cl)(Cl)Cl", "OC1CCCCC1",
                    "CC(C)Cc1ccc(cc1)C(C)C(=O)O")


class ExportableModel(nn.Module):
    """The model's tensor-in, tensor-out forward: ``(fingerprint, nominal_mass) -> spectrum[, expert_weights]``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.has_expert_weights = model.has_expert_weights

    def forward(self, fingerprint: torch.Tensor, nominal_mass: torch.Tensor):
        outputs = self.model.deterministic_outputs(fingerprint, nominal_mass)
        return outputs if self.has_expert_weights else outputs[0]


def output_names(loaded: LoadedModel) -> list[str]:
    """Names of the exported model's outputs."""
    return ["spectrum", "expert_weights"] if loaded.model.has_expert_weights else ["spectrum"]


def reference_inputs(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Fingerprints and nominal masses of :data:`REFERENCE_SMILES` from the model's own featurizer.

    Molecules the featurizer rejects (e.g. heavier than the model's m/z range) are left out.
    """
    featurized = []
    for smiles in REFERENCE_SMILES:
        try:
            featurized.append(loaded.featurizer(smiles, record=f"reference molecule {smiles}"))
        except MoleculeError:
            continue
    if len(featurized) < 4:
        raise ValueError(f"only {len(featurized)} reference molecules fit the featurizer; cannot check an export")
    fingerprint = torch.from_numpy(np.stack([item.features for item in featurized]).astype(np.float32))
    return fingerprint, torch.tensor([item.info.nominal_mass for item in featurized], dtype=torch.int64)


def _embedded_metadata(loaded: LoadedModel, file_format: str) -> str:
    return json.dumps({"format": file_format, "model_class": loaded.model_class,
                       "featurizer": loaded.featurizer.to_config(), "outputs": output_names(loaded),
                       "output_space": "sqrt_intensity", "metadata": loaded.metadata}, default=str)


def _onnx_bytes(module: ExportableModel, example: tuple, names: list[str], opset: int) -> bytes:
    """The module as an ONNX model (bytes) with a dynamic batch axis on every input and output."""
    batch_axis = {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent routing, checked by the callers
        torch.onnx.export(module, example, buffer, input_names=["fingerprint", "nominal_mass"], output_names=names,
                          dynamic_axes={name: batch_axis for name in ["fingerprint", "nominal_mass", *names]},
                          opset_version=opset, dynamo=False)
    return buffer.getvalue()


def _export_onnx(module: ExportableModel, example: tuple, path: Path, names: list[str], metadata: str,
                 opset: int) -> None:
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs the onnx package: pip install 'matchms-neims[onnx]'") from error
    model = onnx.load_from_string(_onnx_bytes(module, example, names, opset))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(model, str(path))


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("running ONNX models needs onnxruntime: pip install 'matchms-neims[onnx]'") from error
    return onnxruntime


def _differences(module: ExportableModel, run, fingerprint: torch.Tensor, mass: torch.Tensor,
                 names: list[str]) -> dict[str, float]:
    """Largest absolute difference per output between ``module`` and ``run`` (numpy in, numpy out).

    Compared at batch sizes 1, 3 and all of the given molecules.
    """
    differences = dict.fromkeys(names, 0.0)
    for rows in (slice(0, 1), slice(1, 4), slice(None)):
        with torch.no_grad():
            expected = module(fingerprint[rows], mass[rows])
        expected = expected if isinstance(expected, tuple) else (expected,)
        actual = run(fingerprint[rows].numpy(), mass[rows].numpy())
        for name, want, got in zip(names, expected, actual):
            differences[name] = max(differences[name], float(np.abs(want.numpy() - got).max()))
    return differences


def _quantized_int8(model_bytes: bytes) -> bytes:
    """Dynamic int8 quantisation of an ONNX model's weights (onnxruntime.quantization, activations stay float)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
        source.write_bytes(model_bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def _spectrum_cosines(module: ExportableModel, run, fingerprint: torch.Tensor, mass: torch.Tensor) -> np.ndarray:
    """Cosine per reference molecule of the module's and ``run``'s spectra, NEIMS weighting (m/z * sqrt intensity).

    The outputs are sqrt intensities already, so they are weighted by ``m/z ** 1 * value ** 1``.
    """
    with torch.no_grad():
        expected = module(fingerprint, mass)
    expected = (expected[0] if isinstance(expected, tuple) else expected).numpy()
    return paired_cosine(run(fingerprint.numpy(), mass.numpy())[0], expected, mz_power=1.0, intensity_power=1.0)


def onnx_session(loaded: LoadedModel, threads: int = 0, opset: int = 17, tolerance: float = 1e-4,
                 quantize: bool = False, min_cosine: float = 0.98):
    """An onnxruntime session of a fingerprint model, exported in memory and checked against PyTorch.

    Parameters
    ----------
    loaded
        The model (:func:`matchms_neims.checkpoint.load_model`).
    threads
        onnxruntime intra-op threads (0: its default).
    opset, tolerance
        As for :func:`export_model`.
    quantize
        Quantise the weights to int8 (dynamic quantisation): faster, and the spectra are no longer equal
        to PyTorch's but close; the check is then that every reference spectrum keeps an m/z-weighted
        cosine of at least ``min_cosine`` to PyTorch's.

    Raises
    ------
    ValueError
        A graph model, or outputs that differ from PyTorch by more than ``tolerance`` (``min_cosine``).
    """
    _check_exportable(loaded, "the model")
    onnxruntime = _onnxruntime()
    module = ExportableModel(loaded.model).eval()
    fingerprint, mass = reference_inputs(loaded)
    names = output_names(loaded)
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    model_bytes = _onnx_bytes(module, (fingerprint, mass), names, opset)
    if quantize:
        model_bytes = _quantized_int8(model_bytes)
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def run(fingerprint_array: np.ndarray, mass_array: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {"fingerprint": fingerprint_array, "nominal_mass": mass_array})

    if quantize:
        worst = float(_spectrum_cosines(module, run, fingerprint, mass).min())
        if not worst >= min_cosine:
            raise ValueError(f"the int8 ONNX version of the model gives a spectrum with cosine {worst:.4f} to "
                             f"PyTorch's (at least {min_cosine:g} needed)")
        return session
    worst = max(_differences(module, run, fingerprint, mass, names).values())
    if not worst <= tolerance:
        raise ValueError(f"the ONNX version of the model differs from PyTorch by {worst:.3g} (tolerance {tolerance:g})")
    return session


def _check_exportable(loaded: LoadedModel, name: object) -> None:
    obstacle = loaded.model.export_obstacle
    if obstacle:
        raise ValueError(f"{name}: {loaded.model_class} {obstacle}")


def _export_torchscript(module: ExportableModel, example: tuple, path: Path, metadata: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent routing, checked below
        traced = torch.jit.trace(module, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={METADATA_KEY: metadata})


def run_exported(path: str | os.PathLike, file_format: str, fingerprint: np.ndarray, nominal_mass: np.ndarray
                 ) -> list[np.ndarray]:
    """Run an exported file (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript) and return its outputs."""
    if file_format == "onnx":
        session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"fingerprint": fingerprint.astype(np.float32),
                                  "nominal_mass": nominal_mass.astype(np.int64)})
    module = torch.jit.load(str(path))
    with torch.no_grad():
        outputs = module(torch.from_numpy(fingerprint.astype(np.float32)),
                         torch.from_numpy(nominal_mass.astype(np.int64)))
    return [output.numpy() for output in (outputs if isinstance(outputs, tuple) else (outputs,))]


def export_model(output: str | os.PathLike, file_format: str, model_path: str | os.PathLike | None = None,
                 opset: int = 17, tolerance: float = 1e-4) -> dict:
    """Export a model file to ONNX or TorchScript, check it against PyTorch, and write it atomically.

    Parameters
    ----------
    output
        File to write (``.onnx`` or ``.pt``/``.ts``).
    file_format
        ``"onnx"`` or ``"torchscript"``.
    model_path
        matchms-neims model file (default: the bundled model).
    opset
        ONNX opset (at least 14).
    tolerance
        Largest absolute difference to PyTorch's outputs allowed on the reference molecules.

    Returns
    -------
    dict
        ``path``, ``format``, ``outputs`` and ``max_abs_difference`` (per output, over the checks).

    Raises
    ------
    ValueError
        Unknown format, opset below 14, a graph model, or an export that differs from PyTorch.
    """
    if file_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {file_format!r}; expected one of {EXPORT_FORMATS}")
    if file_format == "onnx" and opset < 14:
        raise ValueError(f"ONNX opset {opset} is too old; use 14 or newer")
    model_path = Path(model_path) if model_path else bundled_model_path()
    loaded = load_model(model_path)
    _check_exportable(loaded, model_path)
    module = ExportableModel(loaded.model).eval()
    fingerprint, mass = reference_inputs(loaded)
    names = output_names(loaded)
    metadata = _embedded_metadata(loaded, file_format)
    with atomic_path(output) as tmp:
        if file_format == "onnx":
            _export_onnx(module, (fingerprint, mass), tmp, names, metadata, opset)
        else:
            _export_torchscript(module, (fingerprint, mass), tmp, metadata)
        differences = _differences(module, lambda fp, m: run_exported(tmp, file_format, fp, m), fingerprint, mass,
                                   names)
        worst = max(differences.values())
        if not worst <= tolerance:
            raise ValueError(f"the {file_format} export of {model_path} differs from PyTorch by {worst:.3g} "
                             f"(tolerance {tolerance:g}); nothing was written")
    logger.info("exported %s to %s (%s); largest difference to PyTorch %.2g", model_path, output, file_format, worst)
    return {"path": str(output), "format": file_format, "outputs": names, "max_abs_difference": differences}


def read_export_metadata(path: str | os.PathLike, file_format: str) -> dict:
    """The ``matchms_neims`` metadata embedded in an exported file (featurizer, outputs, model metadata)."""
    if file_format == "onnx":
        import onnx

        props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_KEY])
    extra = {METADATA_KEY: ""}
    torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra[METADATA_KEY])
