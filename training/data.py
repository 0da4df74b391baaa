"""Data for training: cleaning, molecule-level splits, the HDF5 cache and the lazy dataset.

The cache holds the cleaned, binned spectra (compressed) and their metadata. It is built once,
with a progress bar, and reused for as long as the source file's SHA-256 and the cleaning, binning
and split settings match; otherwise it is rebuilt. :class:`LazyMassSpecDataset` keeps only the
metadata in RAM and reads spectra from disk when a batch asks for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import torch
from rdkit.Chem.Scaffolds import MurckoScaffold
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from matchms_neims.chemistry import MoleculeError, describe, inchikey_block, parse_smiles
from matchms_neims.cleaning import clean_spectra
from matchms_neims.featurize import Featurizer, compact_features, expand_features
from matchms_neims.io import iter_records
from matchms_neims.spectra import spectrum_to_vector
from matchms_neims.utils import file_sha256
from training.config import DataConfig

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CACHE_FORMAT_VERSION = 2  # 2: salts neutralised after the largest fragment is chosen


# ----------------------------------------------------------------------------------------- splits

def scaffold_of(smiles: str) -> str:
    """Bemis-Murcko scaffold SMILES ('' for acyclic molecules or unparsable SMILES)."""
    try:
        return MurckoScaffold.MurckoScaffoldSmiles(mol=parse_smiles(smiles))
    except (MoleculeError, ValueError, RuntimeError):
        return ""


def contributor_of(spectrum_id: str) -> str:
    """The contributing lab of a MassBank accession (``MSBNK-Fac_Eng_Univ_Tokyo-JP000001`` -> ``Fac_Eng_Univ_Tokyo``).

    Other identifiers give their part before the last ``-`` (or the whole identifier), '' gives ''.
    """
    text = (spectrum_id or "").strip()
    if text.upper().startswith("MSBNK-"):
        text = text[6:]
    return text.rsplit("-", 1)[0] if "-" in text else text


SPLIT_METHODS = ("random", "scaffold", "contributor", "all")


def assign_splits(molecule_keys: list[str], smiles: list[str] | None = None, method: str = "random",
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 42,
                  contributors: list[str] | None = None) -> dict[str, str]:
    """Assign every molecule (InChIKey first block) to ``train``, ``val`` or ``test``.

    Parameters
    ----------
    molecule_keys
        One key per record (several records of one molecule share a key).
    smiles
        SMILES per record, needed for ``method="scaffold"``.
    contributors
        Contributing lab per record (:func:`contributor_of`), needed for ``method="contributor"``.
    method
        ``"random"``: molecules are shuffled with ``seed`` and cut by ``fractions``.
        ``"scaffold"``: molecules are grouped by Bemis-Murcko scaffold, and whole groups are assigned
        (largest groups to training, the rest shuffled), so test scaffolds are unseen in training.
        ``"contributor"``: held-out labs. The test split holds the molecules that the main contributor (the
        one with the most records) never measured, i.e. those measured only by other labs and instruments;
        the main contributor's molecules are shuffled into training and validation in the ratio of
        ``fractions[0]`` to ``fractions[1]`` (``fractions[2]`` is not used: the data fix the test size).
        ``"all"``: every molecule is training data (the refit of a chosen recipe on all cleaned spectra;
        ``fractions`` are not used).
    fractions
        Train, validation and test fractions of molecules.
    seed
        Random seed; the same keys and seed always give the same split.

    Returns
    -------
    dict
        Molecule key -> split name. A molecule is never in two splits.
    """
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions {fractions} must sum to 1")
    unique_keys = sorted(set(molecule_keys))
    rng = np.random.default_rng(seed)
    n_total = len(unique_keys)
    if method == "random":
        groups = [[key] for key in unique_keys]
        order = rng.permutation(len(groups))
        groups = [groups[i] for i in order]
    elif method == "scaffold":
        if smiles is None:
            raise ValueError("scaffold split needs the SMILES of every record")
        smiles_of_key = {}
        for key, smi in zip(molecule_keys, smiles):
            smiles_of_key.setdefault(key, smi)
        by_scaffold: dict[str, list[str]] = {}
        for key in unique_keys:
            by_scaffold.setdefault(scaffold_of(smiles_of_key[key]), []).append(key)
        big = sorted((g for g in by_scaffold.values() if len(g) > fractions[2] * n_total / 2), key=len, reverse=True)
        small = [g for g in by_scaffold.values() if len(g) <= fractions[2] * n_total / 2]
        order = rng.permutation(len(small))
        groups = big + [small[i] for i in order]
    elif method == "contributor":
        return _contributor_split(molecule_keys, contributors, fractions, rng)
    elif method == "all":
        return {key: "train" for key in unique_keys}
    else:
        raise ValueError(f"unknown split method {method!r}; expected one of {SPLIT_METHODS}")
    limits = (fractions[0] * n_total, (fractions[0] + fractions[1]) * n_total)
    assignment: dict[str, str] = {}
    n_train = n_val = 0
    for group in groups:
        if n_train + len(group) <= limits[0] or n_train == 0:
            name, n_train = "train", n_train + len(group)
        elif n_train + n_val + len(group) <= limits[1]:
            name, n_val = "val", n_val + len(group)
        else:
            name = "test"
        for key in group:
            assignment[key] = name
    return assignment


def _contributor_split(molecule_keys: list[str], contributors: list[str] | None,
                       fractions: tuple[float, float, float], rng: np.random.Generator) -> dict[str, str]:
    if contributors is None or len(contributors) != len(molecule_keys):
        raise ValueError("contributor split needs the contributor of every record")
    counts: dict[str, int] = {}
    for contributor in contributors:
        counts[contributor] = counts.get(contributor, 0) + 1
    main = max(sorted(counts), key=counts.get)
    measured_by_main = {key for key, contributor in zip(molecule_keys, contributors) if contributor == main}
    assignment = {key: "test" for key in set(molecule_keys) - measured_by_main}
    seen = sorted(measured_by_main)
    order = rng.permutation(len(seen))
    n_val = int(round(len(seen) * fractions[1] / max(fractions[0] + fractions[1], 1e-12)))
    for position, i in enumerate(order):
        assignment[seen[i]] = "val" if position < n_val else "train"
    return assignment


# ------------------------------------------------------------------------------------------ cache

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


# ---------------------------------------------------------------------------------------- dataset

class LazyMassSpecDataset(Dataset):
    """Training samples from the HDF5 cache: metadata in RAM, spectra read from disk per item.

    Each item is a dict with ``features`` (model input), ``target`` (binned spectrum, base peak 1),
    ``nominal_mass``, ``index`` (row in the cache) and ``molecule`` (an integer shared by the rows of one
    molecule). Features are computed on the fly and
    memoised per molecule (fingerprints as their non-zero entries, see :func:`compact_features`; graphs as
    they are).

    Parameters
    ----------
    augmenter
        Optional :class:`training.augment.SpectrumAugmenter` (13C labelling, LDS) applied per item;
        give it to the training split only.
    soft_labels
        Optional :class:`training.soft_labels.SoftLabels`; items then also hold ``teacher_mean``,
        ``teacher_std``, ``teacher_embedding`` and ``has_teacher`` (0 for rows without a label and for
        13C-labelled samples, whose teacher label would be of the unlabelled molecule).
    memoize_features
        Keep each molecule's features after their first use (default); ``False`` featurises on every
        read, so that only the metadata stays in RAM.
    """

    def __init__(self, cache_path: str | os.PathLike, split: str | None, featurizer: Featurizer,
                 metadata: CacheMetadata | None = None, augmenter=None, soft_labels=None,
                 memoize_features: bool = True):
        self.cache_path = Path(cache_path)
        self.metadata = metadata or CacheMetadata(cache_path)
        self.indices = self.metadata.indices(split)
        self.featurizer = featurizer
        self.augmenter = augmenter if augmenter is not None and augmenter.active else None
        self.soft_labels = soft_labels
        self._handle: h5py.File | None = None
        self._feature_cache: dict[str, np.ndarray] = {}
        self.memoize_features = memoize_features
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None  # each DataLoader worker opens its own handle
        return state

    def _spectra(self) -> h5py.Dataset:
        if self._handle is None:
            self._handle = h5py.File(self.cache_path, "r")
        return self._handle["spectra"]

    def features(self, smiles: str):
        cached = self._feature_cache.get(smiles)
        if cached is None:
            cached = compact_features(self.featurizer.features_of_mol(parse_smiles(smiles)))
            if self.memoize_features:
                self._feature_cache[smiles] = cached
        return torch.from_numpy(expand_features(cached, self.featurizer.size)) if isinstance(cached, np.ndarray) \
            else cached

    def _random(self) -> np.random.Generator:
        # One stream per DataLoader worker and epoch, seeded from torch: Lightning seeds the workers and
        # training.callbacks.EpochSeed reseeds torch at every epoch start, so a resumed run draws the same.
        seed = torch.initial_seed()
        if self._rng is None or self._rng_seed != seed:
            self._rng, self._rng_seed = np.random.default_rng(seed % 2**32), seed
        return self._rng

    def __getitem__(self, item: int) -> dict:
        row = int(self.indices[item])
        smiles = self.metadata.columns["smiles"][row]
        target = np.asarray(self._spectra()[row], dtype=np.float32)
        mass = int(self.metadata.nominal_mass[row])
        features = None
        if self.augmenter is not None:
            labelled = self.augmenter.label(smiles, target, self._random())
            if labelled is not None:
                mol, target, mass = labelled
                features = self.featurizer.features_of_mol(mol)
            target = self.augmenter.smooth(target)
        relabelled = features is not None
        if features is None:
            features = self.features(smiles)
        elif isinstance(features, np.ndarray):
            features = torch.from_numpy(features.astype(np.float32))
        item = {
            "features": features,
            "target": torch.from_numpy(np.asarray(target, dtype=np.float32)),
            "nominal_mass": torch.tensor(mass),
            "index": torch.tensor(row),
            "molecule": torch.tensor(int(self.metadata.molecule_id[row])),
        }
        if self.soft_labels is not None:
            label = None if relabelled else self.soft_labels.get(row)
            item.update(teacher_item(label, len(target), self.soft_labels.embedding_size))
            item["has_target"] = torch.tensor(1.0)
        return item


def teacher_item(label: tuple | None, n_bins: int, embedding_size: int) -> dict:
    """The ``teacher_*`` and ``has_teacher`` entries of a training item from a (mean, std, embedding) label.

    ``None`` (no label) gives zeros and ``has_teacher`` 0, so that the item drops out of the distillation losses.
    """
    if label is None:
        return {"teacher_mean": torch.zeros(n_bins), "teacher_std": torch.zeros(n_bins),
                "teacher_embedding": torch.zeros(embedding_size), "has_teacher": torch.tensor(0.0)}
    mean, std, embedding = (torch.from_numpy(np.asarray(value, dtype=np.float32)) for value in label)
    return {"teacher_mean": mean, "teacher_std": std, "teacher_embedding": embedding,
            "has_teacher": torch.tensor(1.0)}


class SampleCollator:
    """Collate dataset items into a batch dict whose ``inputs`` tuple feeds the model (graphs batched by PyG)."""

    def __init__(self, feature_kind: str):
        self.feature_kind = feature_kind

    def __call__(self, items: list[dict]) -> dict:
        from matchms_neims.featurize import collate_features

        features = [item["features"] for item in items]
        if isinstance(features[0], torch.Tensor):
            inputs = (torch.stack(features),)
        else:
            inputs = collate_features(self.feature_kind, features)
        return {"inputs": inputs,
                **{key: torch.stack([item[key] for item in items]) for key in items[0] if key != "features"}}


class EpochSeededSampler(torch.utils.data.Sampler[int]):
    """A random order of ``n`` items that depends only on ``seed`` and the epoch (Lightning calls :meth:`set_epoch`).

    The DataLoader's default shuffling draws from torch's global random state, which a resumed run does not
    have; this order is the same for epoch ``e`` whether the run was interrupted or not.
    """

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class MassGroupedSampler(EpochSeededSampler):
    """An order of the items in which each run of ``batch_size`` items holds molecules of similar nominal mass.

    Per epoch, the masses are jittered by a uniform ``+-jitter`` Da, sorted and cut into batches, and the batches
    are shuffled (the last, shorter one stays last, so that every batch the DataLoader cuts is one group). Under
    the in-batch retrieval loss the other molecules of a batch are then the look-alikes a library search has to
    tell apart (same mass range), not easy negatives of another size. Depends only on ``seed`` and the epoch.
    One process only: under DDP, Lightning puts its DistributedSampler (random batches) in place of this one.

    Parameters
    ----------
    nominal_masses
        Nominal mass of each item, in item order.
    batch_size
        The DataLoader's batch size.
    jitter
        Half-width (Da) of the uniform noise added to the masses before sorting; 0 gives the same groups
        every epoch.
    """

    def __init__(self, nominal_masses: np.ndarray, batch_size: int, seed: int = 0, jitter: float = 5.0):
        super().__init__(len(nominal_masses), seed)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.nominal_masses = np.asarray(nominal_masses, dtype=np.float64)
        self.batch_size = batch_size
        self.jitter = float(jitter)

    def __iter__(self):
        rng = np.random.default_rng(self.seed * 100_003 + self.epoch)
        keys = self.nominal_masses + rng.uniform(-self.jitter, self.jitter, self.n)
        order = np.argsort(keys, kind="stable")
        n_full = self.n // self.batch_size
        batches = order[:n_full * self.batch_size].reshape(n_full, self.batch_size)
        batches = batches[rng.permutation(n_full)]
        return iter(np.concatenate([batches.reshape(-1), order[n_full * self.batch_size:]]).tolist())


BATCH_GROUPINGS = ("random", "mass")


class SpectraDataModule(L.LightningDataModule):
    """Lightning DataModule over the cache (train/val/test splits by molecule)."""

    def __init__(self, config: DataConfig, featurizer: Featurizer, augmenter=None, soft_labels=None,
                 transfer: Dataset | None = None):
        super().__init__()
        self.config = config
        self.featurizer = featurizer
        self.augmenter = augmenter
        self.soft_labels = soft_labels  # training split only
        self.transfer = transfer  # molecules with teacher labels only, appended to the training split
        self.datasets: dict[str, LazyMassSpecDataset] = {}
        self.metadata: CacheMetadata | None = None

    def prepare_data(self) -> None:
        build_cache(self.config)

    def setup(self, stage: str | None = None) -> None:
        cache = build_cache(self.config, progress=False) if not Path(self.config.cache).is_file() else self.config.cache
        self.metadata = metadata = CacheMetadata(cache)
        for split in SPLITS:
            train = split == "train"
            self.datasets[split] = LazyMassSpecDataset(cache, split, self.featurizer, metadata,
                                                       self.augmenter if train else None,
                                                       self.soft_labels if train else None,
                                                       self.config.memoize_features)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        if split == "train" and self.transfer is not None:
            dataset = ConcatDataset([dataset, self.transfer])
        # shuffled by (seed, epoch), so a resumed run sees the same order; Lightning swaps in a
        # DistributedSampler (also seeded per epoch) under DDP
        sampler = self._train_sampler(dataset) if shuffle else None
        # its own generator: creating an iterator then draws no number from torch's global stream (dropout's)
        return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.config.split_seed),
                          num_workers=self.config.num_workers, persistent_workers=self.config.num_workers > 0,
                          collate_fn=SampleCollator(self.featurizer.kind))

    def _train_sampler(self, dataset: Dataset) -> EpochSeededSampler:
        grouping = self.config.batch_grouping
        if grouping not in BATCH_GROUPINGS:
            raise ValueError(f"unknown data.batch_grouping {grouping!r}; expected one of {BATCH_GROUPINGS}")
        if grouping == "random":
            return EpochSeededSampler(len(dataset), self.config.split_seed)
        if not isinstance(dataset, LazyMassSpecDataset):
            raise ValueError("data.batch_grouping 'mass' needs the spectra of the cache alone (no transfer set)")
        masses = dataset.metadata.nominal_mass[dataset.indices]
        return MassGroupedSampler(masses, self.config.batch_size, self.config.split_seed,
                                  self.config.batch_mass_jitter)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
