"""Model evaluation: spectrum similarity, peak metrics, library matching (NEIMS protocol) and inference time.

Library matching follows NEIMS (Wei et al. 2019): every experimental spectrum of a held-out molecule
is a query; the library holds the experimental spectra of all *other* molecules, the predicted
spectra of the held-out molecules and, optionally, predicted spectra of decoy molecules. A query is
answered correctly at rank k when its own molecule's predicted spectrum is among the top k hits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
from rdkit.Chem import GraphDescriptors

from matchms_neims.chemistry import describe, inchikey_block, parse_smiles
from matchms_neims.io import MoleculeInput
from matchms_neims.metrics import (
    isotope_ratio_agreement,
    library_ranks,
    recall_at_k,
    spectrum_metrics,
    summarize,
    uncertainty_calibration,
)
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.timing import batch_throughput, single_molecule_latency

MASS_BINS = ((0, 200, "<200 Da"), (200, 300, "200-300 Da"), (300, math.inf, ">=300 Da"))
#: Element classes of the breakdown: a molecule is in every class whose elements it has, or in "none".
ELEMENT_CLASSES = (("Cl/Br", ("Cl", "Br")), ("S", ("S",)), ("Si", ("Si",)), ("P", ("P",)), ("F", ("F",)))
#: The NEIMS mass filter: library entries within this many Da of the query's molecular mass.
MASS_FILTER_WINDOW = 5.0
#: Bertz CT molecular complexity bins.
COMPLEXITY_BINS = ((0, 250, "low (BertzCT<250)"), (250, 500, "medium (250-500)"), (500, math.inf, "high (>500)"))


@dataclass
class SpectraSet:
    """Experimental spectra for evaluation: binned vectors and the molecule of each row."""

    vectors: np.ndarray
    smiles: list[str]
    keys: list[str]  # InChIKey first block per row
    names: list[str] = field(default_factory=list)
    masses: np.ndarray | None = None  # nominal molecular mass per row (for the mass-filter variant)


def _bin_label(value: float, bins) -> str:
    for low, high, label in bins:
        if low <= value < high:
            return label
    return bins[-1][2]


def element_classes(mol) -> list[str]:
    """The :data:`ELEMENT_CLASSES` of a molecule (``["none"]`` when it has none of their elements)."""
    symbols = {atom.GetSymbol() for atom in mol.GetAtoms()}
    classes = [name for name, elements in ELEMENT_CLASSES if symbols.intersection(elements)]
    return classes or ["none"]


def _timing(predictor: NeimsPredictor, smiles: list[str], n_molecules: int) -> dict:
    """Single-molecule latency (featurize + model + peaks) and batched throughput, in ms per molecule."""
    sample = smiles[:n_molecules]
    if not sample:
        return {}
    latency = single_molecule_latency(predictor, sample)
    single = latency["with_featurization"]
    molecules_per_s = batch_throughput(predictor, sample, predictor.batch_size)
    return {"n_molecules": latency["n_molecules"], "single_mean_ms": single["mean_ms"],
            "single_median_ms": single["p50_ms"], "single_std_ms": single["std_ms"],
            "single_p95_ms": single["p95_ms"], "single_p99_ms": single["p99_ms"],
            "model_only_median_ms": latency["model_only"]["p50_ms"], "batch_ms_per_molecule": 1000 / molecules_per_s}


def matching_library(predicted: np.ndarray, keys: list[str], structures: list[str],
                     background: SpectraSet | None = None, masses: list[int] | None = None
                     ) -> tuple[np.ndarray, list[str], int, np.ndarray]:
    """Library of the NEIMS protocol for query rows with predicted spectra.

    It holds the background's experimental spectra of *other* molecules (rows whose key is a query key
    are dropped) and one predicted spectrum per distinct (structure, key) of the queries. A hit is
    correct when its key (InChIKey first block) is the query's.

    Parameters
    ----------
    predicted
        Predicted spectrum of each query row.
    keys, structures
        Molecule key and canonical SMILES of each query row; isotope-labelled analogues share the key
        but not the structure, and get an entry each.
    background
        Experimental spectra of other molecules.
    masses
        Nominal molecular mass of each query row; the library masses are then returned (NaN where the
        background has none).

    Returns
    -------
    library, library_keys, n_structures, library_masses
        Library vectors (float32), their keys, the number of predicted entries, and their masses.
    """
    query_keys = set(keys)
    parts, library_keys, mass_parts = [], [], []
    if background is not None and len(background.keys):
        keep = [i for i, key in enumerate(background.keys) if key not in query_keys]
        parts.append(background.vectors[keep])
        library_keys += [background.keys[i] for i in keep]
        background_masses = background.masses if background.masses is not None else np.full(len(background.keys),
                                                                                             np.nan)
        mass_parts.append(np.asarray(background_masses, dtype=np.float64)[keep])
    first_row: dict[tuple[str, str], int] = {}
    for row, entry in enumerate(zip(structures, keys)):
        first_row.setdefault(entry, row)
    parts.append(predicted[list(first_row.values())])
    library_keys += [key for _, key in first_row]
    query_masses = np.asarray(masses if masses is not None else [np.nan] * len(keys), dtype=np.float64)
    mass_parts.append(query_masses[list(first_row.values())])
    return (np.concatenate(parts).astype(np.float32), library_keys, len(first_row),
            np.concatenate(mass_parts))


def evaluate_model(predictor: NeimsPredictor, queries: SpectraSet, background: SpectraSet | None = None,
                   decoy_smiles: list[str] | None = None, ks: tuple[int, ...] = (1, 5, 10, 20),
                   mz_power: float = 1.0, intensity_power: float = 0.5, timing_molecules: int = 200,
                   uncertainty_samples: int = 30) -> dict:
    """Evaluate a predictor on held-out experimental spectra.

    Parameters
    ----------
    predictor
        The model to evaluate.
    queries
        Experimental spectra of the held-out molecules (vectors binned to ``predictor.max_mz``).
    background
        Experimental spectra of other molecules for the library (rows of query molecules are dropped).
    decoy_smiles
        Extra molecules whose predicted spectra join the library as decoys.
    ks
        Recall@k values to report.
    mz_power, intensity_power
        Cosine weighting of the library search.
    timing_molecules
        Molecules timed for the latency statistics (0 to skip).
    uncertainty_samples
        For models with MC-dropout uncertainty: samples per molecule for the calibration report
        (``uncertainty_calibration``; 0 to skip). The metrics above use the deterministic prediction.

    Returns
    -------
    dict
        JSON-serialisable report; see :func:`format_report` for a readable table.
    """
    # One prediction per distinct structure: isotope-labelled analogues share the InChIKey first block
    # with their parent but not the spectrum.
    key_of_smiles: dict[str, str] = {}
    for key, smi in zip(queries.keys, queries.smiles):
        key_of_smiles.setdefault(smi, key)
    batch = predictor.predict_batch([MoleculeInput(smi, smi, key) for smi, key in key_of_smiles.items()])
    predicted_of = {molecule.smiles: vector for molecule, vector in zip(batch.molecules, batch.vectors)}
    info_of = {molecule.smiles: info for molecule, info in zip(batch.molecules, batch.infos)}
    rows = [i for i, smi in enumerate(queries.smiles) if smi in predicted_of]
    true = queries.vectors[rows]
    row_keys = [queries.keys[i] for i in rows]
    row_smiles = [queries.smiles[i] for i in rows]
    predicted = np.stack([predicted_of[smi] for smi in row_smiles]) if rows else np.zeros_like(true)
    per_spectrum = spectrum_metrics(predicted, true)

    # Library: background experimental spectra of other molecules + predictions of the query molecules + decoys.
    query_key_set = set(row_keys)
    masses = [info_of[smi].nominal_mass for smi in row_smiles]
    library, library_keys, n_structures, library_masses = matching_library(
        predicted, row_keys, [info_of[smi].smiles for smi in row_smiles], background, masses)
    library_parts, mass_parts = [library], [library_masses]
    n_decoys = 0
    if decoy_smiles:
        decoys = predictor.predict_batch(decoy_smiles)
        decoy_keys = [inchikey_block(info.inchikey) for info in decoys.infos]
        keep = [i for i, key in enumerate(decoy_keys) if key not in query_key_set]
        library_parts.append(decoys.vectors[keep])
        library_keys += [f"decoy:{decoy_keys[i]}" for i in keep]
        mass_parts.append(np.array([decoys.infos[i].nominal_mass for i in keep], dtype=np.float64))
        n_decoys = len(keep)
    library = np.concatenate(library_parts).astype(np.float32)
    library_masses = np.concatenate(mass_parts)
    ranks = library_ranks(true, row_keys, library, library_keys, mz_power, intensity_power)
    filtered_ranks = library_ranks(true, row_keys, library, library_keys, mz_power, intensity_power,
                                   query_masses=np.asarray(masses, dtype=np.float64), library_masses=library_masses,
                                   mass_window=MASS_FILTER_WINDOW)

    report = {
        "n_query_spectra": len(rows),
        "n_query_molecules": len(query_key_set),
        "n_query_structures": n_structures,
        "n_unpredictable_molecules": len(batch.errors),
        "library_size": int(len(library_keys)),
        "n_decoys": n_decoys,
        "library_weighting": {"mz_power": mz_power, "intensity_power": intensity_power},
        "metrics": {name: summarize(values) for name, values in per_spectrum.items()},
        "library_matching": recall_at_k(ranks, ks),
        "library_matching_mass_filter": {"window_da": MASS_FILTER_WINDOW, **recall_at_k(filtered_ranks, ks)},
    }
    report["library_matching"]["mean_rank"] = float(ranks[ranks > 0].mean()) if np.any(ranks > 0) else float("nan")

    mols = {smi: parse_smiles(smi) for smi in predicted_of}
    complexity = {smi: GraphDescriptors.BertzCT(mol) for smi, mol in mols.items()}
    classes_of = {smi: element_classes(mol) for smi, mol in mols.items()}
    groupings = [("molecular_weight", [[_bin_label(v, MASS_BINS)] for v in masses], [b[2] for b in MASS_BINS]),
                 ("element_class", [classes_of[smi] for smi in row_smiles],
                  [name for name, _ in ELEMENT_CLASSES] + ["none"]),
                 ("complexity", [[_bin_label(complexity[smi], COMPLEXITY_BINS)] for smi in row_smiles],
                  [b[2] for b in COMPLEXITY_BINS])]
    breakdowns = {}
    for title, labels_per_row, labels in groupings:
        breakdowns[title] = {}
        for label in labels:
            mask = np.array([label in row_labels for row_labels in labels_per_row], dtype=bool)
            if not mask.any():
                continue
            entry = {"n_spectra": int(mask.sum())}
            entry.update({f"cosine_{w}": float(per_spectrum[f"cosine_{w}"][mask].mean())
                          for w in ("sqrt", "neims", "stein")})
            entry.update(recall_at_k(ranks[mask], ks))
            breakdowns[title][label] = entry
    report["breakdowns"] = breakdowns
    if batch.expert_weights is not None and len(batch.expert_weights):
        report["routing"] = expert_routing(np.asarray(batch.expert_weights))
    # the molecular ion's chlorine/bromine cluster, predicted against measured ((M+2)/M)
    halogenated = np.array(["Cl/Br" in classes_of[smi] for smi in row_smiles], dtype=bool)
    if halogenated.any():
        report["isotope_ratio_cl_br"] = isotope_ratio_agreement(predicted[halogenated], true[halogenated],
                                                                np.asarray(masses)[halogenated])
    if uncertainty_samples and predictor.supports_uncertainty and rows:
        mc = predictor.predict_batch([MoleculeInput(smi, smi, key_of_smiles[smi]) for smi in predicted_of],
                                     uncertainty_samples=uncertainty_samples)
        position = {molecule.smiles: i for i, molecule in enumerate(mc.molecules)}
        take = [position[smi] for smi in row_smiles]
        report["uncertainty_calibration"] = {
            "mc_dropout_samples": uncertainty_samples,
            **uncertainty_calibration(mc.sqrt_mean[take], mc.sqrt_std[take], true, np.array(masses))}
    if timing_molecules:
        report["inference_time"] = _timing(predictor, list(predicted_of), timing_molecules)
    report["model"] = {"name": predictor.model_name, "version": predictor.model_version,
                       "path": str(predictor.model_path) if predictor.model_path else None}
    return report


def expert_routing(expert_weights: np.ndarray) -> dict:
    """Per expert of a mixture of experts: the share of molecules that chose it and its mean mixing weight then.

    An expert chosen often but weighted near zero costs its compute and contributes nothing.
    """
    chosen = expert_weights > 0
    return {f"expert_{e}": {"chosen": float(chosen[:, e].mean()),
                            "mean_weight_when_chosen": float(expert_weights[chosen[:, e], e].mean())
                            if chosen[:, e].any() else 0.0}
            for e in range(expert_weights.shape[1])}


def format_report(report: dict) -> str:
    """Readable table of an evaluation report."""
    lines = [f"model: {report['model']['name']} {report['model']['version']}",
             f"queries: {report['n_query_spectra']} spectra of {report['n_query_molecules']} molecules "
             f"({report['n_unpredictable_molecules']} molecules could not be predicted); "
             f"library: {report['library_size']} spectra ({report['n_decoys']} decoys)", "",
             f"{'metric':<24}{'mean':>10}{'median':>10}{'std':>10}"]
    for name, stats in report["metrics"].items():
        lines.append(f"{name:<24}{stats['mean']:>10.4f}{stats['median']:>10.4f}{stats['std']:>10.4f}")
    lines += ["", "library matching: " + "  ".join(f"{k}={v:.4f}" for k, v in report["library_matching"].items())]
    filtered = report.get("library_matching_mass_filter")
    if filtered:
        lines.append(f"with the +-{filtered['window_da']:g} Da mass filter: " + "  ".join(
            f"{k}={v:.4f}" for k, v in filtered.items() if k != "window_da"))
    for title, bins in report.get("breakdowns", {}).items():
        lines += ["", f"by {title.replace('_', ' ')}:"]
        for label, entry in bins.items():
            values = "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items())
            lines.append(f"  {label:<22}{values}")
    routing = report.get("routing")
    if routing:
        lines += ["", "experts (share of molecules choosing it / mean weight when chosen): " + "  ".join(
            f"{name}={entry['chosen']:.3f}/{entry['mean_weight_when_chosen']:.3f}" for name, entry in routing.items())]
    isotopes = report.get("isotope_ratio_cl_br")
    if isotopes and isotopes["n_spectra"]:
        lines += ["", f"Cl/Br molecular-ion cluster, (M+2)/M predicted vs measured ({isotopes['n_spectra']} spectra): "
                      f"median |log ratio error| {isotopes['median_abs_log_ratio_error']:.3f}, "
                      f"{isotopes['share_within_20_percent']:.0%} within 20%"]
    calibration = report.get("uncertainty_calibration")
    if calibration:
        lines += ["", f"MC-dropout uncertainty ({calibration['mc_dropout_samples']} samples): "
                      f"std vs |error| per bin pearson={calibration['bin_pearson']:.3f} "
                      f"spearman={calibration['bin_spearman']:.3f}; spread vs 1-cosine per spectrum "
                      f"spearman={calibration['spectrum_spearman']:.3f}",
                  "  std decile   mean std   mean |error|"]
        lines += [f"  {group['decile']:>10}{group['mean_std']:>11.4f}{group['mean_abs_error']:>15.4f}"
                  for group in calibration["by_std_decile"]]
    timing = report.get("inference_time")
    if timing:
        lines += ["", "inference time per molecule (CPU): " + "  ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in timing.items())]
    return "\n".join(lines)


def report_to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=float)


def spectra_set_from_spectra(spectra, max_mz: int) -> SpectraSet:
    """Build a :class:`SpectraSet` from matchms spectra that carry SMILES (molecule key from the structure)."""
    from matchms_neims.spectra import spectrum_to_vector

    vectors, smiles, keys, names, masses = [], [], [], [], []
    for spectrum in spectra:
        mol = parse_smiles(spectrum.get("smiles"))
        info = describe(mol)
        vectors.append(spectrum_to_vector(spectrum, max_mz))
        smiles.append(info.smiles)
        keys.append(inchikey_block(spectrum.get("inchikey")) or inchikey_block(info.inchikey))
        names.append(str(spectrum.get("compound_name") or ""))
        masses.append(info.nominal_mass)
    return SpectraSet(np.stack(vectors) if vectors else np.zeros((0, max_mz + 1), np.float32), smiles, keys, names,
                      np.array(masses, dtype=np.float64))
