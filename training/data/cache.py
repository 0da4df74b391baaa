"""The HDF5 cache of cleaned, binned spectra and their metadata, rebuilt when the source or the settings change;
the export of a split's molecules."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from matchms_neims.chemistry import describe, inchikey_block, parse_smiles
from matchms_neims.cleaning import clean_spectra
from matchms_neims.io import iter_records
from matchms_neims.spectra import spectrum_to_vector
from matchms_neims.utils import file_sha256
from matchms_neims_training.config import DataConfig
from matchms_neims_training.data.splits import SPLITS, assign_splits, contributor_of

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2  # 2: salts neutralised after the largest fragment is chosen


def cache_fingerprint(config: DataConfig, source_hash: str) -> str:
    """Everything that changes the cache content: source hash, cleaning, binning and split settings."""
    settings = {
        "format": CACHE_FORMAT_VERSION,
        "source_sha256": source_hash,
        "max_mz": config.max_mz,
        "cleaning": asdict(config.cleaning),
        "split_method": config.split_method,
        "split_fractions": list(config.split_fractions),
        "split_seed": config.split_seed,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


#: The string columns of a cache (held in RAM by :class:`CacheMetadata`) and all its per-spectrum columns.
CACHE_STRING_COLUMNS = ("smiles", "inchikey", "molecule_key", "compound_name", "spectrum_id", "instrument_type")
CACHE_COLUMNS = (*CACHE_STRING_COLUMNS, "nominal_mass", "split")


def cache_problem(cache: Path, fingerprint: str, max_mz: int) -> str | None:
    """Why an existing cache cannot be reused (``None`` when it can).

    It must open as HDF5, carry ``fingerprint`` (same source file, cleaning, binning, split and cache format
    version) and hold every column with one row per spectrum and ``max_mz + 1`` bins, readable at both ends.
    """
    try:
        with h5py.File(cache, "r") as handle:
            if handle.attrs.get("fingerprint") != fingerprint:
                return "is stale (the source file, the settings or the cache format changed)"
            missing = [name for name in ("spectra", *CACHE_COLUMNS) if name not in handle]
            if missing:
                return f"is incomplete (no {', '.join(missing)})"
            spectra = handle["spectra"]
            if spectra.ndim != 2 or spectra.shape[1] != max_mz + 1:
                return f"has spectra of shape {spectra.shape}, not (n, {max_mz + 1})"
            lengths = {name: len(handle[name]) for name in CACHE_COLUMNS}
            if any(length != spectra.shape[0] for length in lengths.values()):
                return f"has columns of different lengths ({spectra.shape[0]} spectra, {lengths})"
            if spectra.shape[0]:
                spectra[0], spectra[-1]  # noqa: B018 - the first and last chunks decompress
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        return f"is unreadable ({type(error).__name__}: {error})"
    return None


def _string_dataset(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype("utf-8"),
                         compression="gzip")


def build_cache(config: DataConfig, force: bool = False, progress: bool = True) -> Path:
    """Build (or reuse) the HDF5 cache of cleaned, binned, split spectra.

    Returns
    -------
    Path
        The cache file. It is reused when its stored fingerprint matches the source file hash and
        settings, and rebuilt (atomically) otherwise.
    """
    from matchms_neims.utils import atomic_path

    source = Path(config.spectra)
    if not source.is_file():
        raise FileNotFoundError(f"spectra file {source} not found")
    cache = Path(config.cache)
    fingerprint = cache_fingerprint(config, file_sha256(source))
    if cache.is_file() and not force:
        problem = cache_problem(cache, fingerprint, config.max_mz)
        if problem is None:
            logger.info("reusing cache %s", cache)
            return cache
        logger.warning("cache %s %s: rebuilding it", cache, problem)

    records = list(tqdm(iter_records(source), desc=f"reading {source.name}", unit="spectra", disable=not progress))
    spectra = [record.to_spectrum() for record in records]
    kept, report = clean_spectra(spectra, config.cleaning, progress=progress)
    logger.info("%s", report)

    rows = []
    for spectrum in tqdm(kept, desc="binning", unit="spectra", disable=not progress):
        mol = parse_smiles(spectrum.get("smiles"))
        info = describe(mol)
        key = inchikey_block(spectrum.get("inchikey")) or inchikey_block(info.inchikey)
        rows.append((spectrum, info, key))
    keys = [row[2] for row in rows]
    assignment = assign_splits(keys, [row[1].smiles for row in rows], config.split_method,
                               tuple(config.split_fractions), config.split_seed,
                               [contributor_of(str(row[0].get("spectrum_id") or "")) for row in rows])
    n_bins = config.max_mz + 1
    with atomic_path(cache) as tmp:
        with h5py.File(tmp, "w") as handle:
            vectors = handle.create_dataset("spectra", shape=(len(rows), n_bins), dtype=np.float32,
                                            chunks=(min(64, max(1, len(rows))), n_bins), compression="gzip")
            for start in range(0, len(rows), 1024):
                block = rows[start : start + 1024]
                vectors[start : start + len(block)] = np.stack(
                    [spectrum_to_vector(row[0], config.max_mz) for row in block])
            _string_dataset(handle, "smiles", [row[1].smiles for row in rows])
            _string_dataset(handle, "inchikey", [row[0].get("inchikey") or row[1].inchikey for row in rows])
            _string_dataset(handle, "molecule_key", keys)
            _string_dataset(handle, "compound_name", [str(row[0].get("compound_name") or "") for row in rows])
            _string_dataset(handle, "spectrum_id", [str(row[0].get("spectrum_id") or "") for row in rows])
            _string_dataset(handle, "instrument_type", [str(row[0].get("instrument_type") or "") for row in rows])
            handle.create_dataset("nominal_mass", data=np.array([row[1].nominal_mass for row in rows], dtype=np.int32))
            handle.create_dataset("split", data=np.array([SPLITS.index(assignment[k]) for k in keys], dtype=np.int8))
            handle.attrs["fingerprint"] = fingerprint
            handle.attrs["source"] = str(source)
            handle.attrs["max_mz"] = config.max_mz
            handle.attrs["cleaning_report"] = json.dumps(report.to_dict())
    counts = {name: int(sum(assignment[k] == name for k in keys)) for name in SPLITS}
    logger.info("cache %s written: %d spectra (train/val/test spectra: %s)", cache, len(rows), counts)
    return cache


class CacheMetadata:
    """Metadata columns of a cache, held in RAM (no spectra)."""

    def __init__(self, cache_path: str | os.PathLike):
        self.path = Path(cache_path)
        with h5py.File(self.path, "r") as handle:
            self.max_mz = int(handle.attrs["max_mz"])
            self.split = handle["split"][:]
            self.nominal_mass = handle["nominal_mass"][:]
            self.columns = {name: handle[name].asstr()[:] for name in CACHE_STRING_COLUMNS}
        # one integer per molecule (rows of one molecule share it): the retrieval loss's "same molecule"
        self.molecule_id = np.unique(self.columns["molecule_key"], return_inverse=True)[1].astype(np.int64)

    def indices(self, split: str | None) -> np.ndarray:
        if split is None:
            return np.arange(len(self.split))
        return np.flatnonzero(self.split == SPLITS.index(split))


def read_spectra(cache_path: str | os.PathLike, indices: np.ndarray) -> np.ndarray:
    """Read binned spectra (rows ``indices``) from a cache."""
    indices = np.asarray(indices)
    order = np.argsort(indices)
    with h5py.File(cache_path, "r") as handle:
        rows = handle["spectra"][indices[order]] if len(indices) else np.zeros((0, handle["spectra"].shape[1]))
    out = np.empty_like(rows)
    out[order] = rows
    return out


def export_split(config: DataConfig, split: str, output: str | os.PathLike,
                 molecules_output: str | os.PathLike | None = None) -> tuple[int, int]:
    """Write the cleaned, binned spectra of one split (MSP/MGF, atomically) and optionally its molecules (.smi).

    Returns
    -------
    tuple
        Number of spectra and of unique molecules written.
    """
    from matchms_neims.io import SpectrumRecord, write_spectra
    from matchms_neims.spectra import vector_to_peaks
    from matchms_neims.utils import atomic_output

    cache = build_cache(config)
    metadata = CacheMetadata(cache)
    indices = metadata.indices(split)
    vectors = read_spectra(cache, indices)
    records = []
    for row, vector in zip(indices, vectors):
        mz, intensities = vector_to_peaks(vector)
        records.append(SpectrumRecord({
            "compound_name": metadata.columns["compound_name"][row], "smiles": metadata.columns["smiles"][row],
            "inchikey": metadata.columns["inchikey"][row], "spectrum_id": metadata.columns["spectrum_id"][row],
            "instrument_type": metadata.columns["instrument_type"][row], "split": split}, mz, intensities))
    write_spectra(records, output)
    unique = {}
    for row in indices:
        unique.setdefault(metadata.columns["molecule_key"][row], row)
    if molecules_output is not None:
        with atomic_output(molecules_output) as handle:
            for row in unique.values():
                name = metadata.columns["compound_name"][row].replace("\t", " ")
                handle.write(f"{metadata.columns['smiles'][row]}\t{name}\n")
    return len(records), len(unique)


