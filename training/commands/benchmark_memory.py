"""RAM of the training data: everything in memory versus the lazy HDF5 dataset (``matchms-neims benchmark-memory``).

Three ways to hold a training set are compared:

* ``in_memory``: every binned spectrum and every model input as float32 arrays, as a ``TensorDataset``
  would hold them;
* ``lazy_memoized``: :class:`matchms_neims_training.data.dataset.LazyMassSpecDataset` as training uses it by default:
  the metadata in RAM, spectra read from the HDF5 cache per item, each molecule's fingerprint kept as its non-zero
  entries (:func:`matchms_neims.featurize.compact_features`) after its first use;
* ``lazy``: the same with ``data.memoize_features: false``: only the metadata stays in RAM.

``estimate`` computes the bytes per spectrum of each way for a number of compounds and a RAM size;
``benchmark`` loads spectra each way, one fresh process per way, and measures the growth of the resident
memory; ``compare`` does both on the same spectra and prints them side by side with a recommendation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from dataclasses import dataclass

import numpy as np

from matchms_neims.benchmark import peak_rss_mb, run_in_fresh_process
from matchms_neims.utils import atomic_output

MODES = ("in_memory", "lazy_memoized", "lazy")
#: RAM per spectrum of the metadata columns held by :class:`matchms_neims_training.data.cache.CacheMetadata`: six Python
#: strings (SMILES, InChIKey, molecule key, name, spectrum id, instrument) of ~60-100 B each with their pointers, plus
#: split and mass. Fixed costs (the HDF5 handle and chunk cache, a few MB) come on top and are not estimated.
METADATA_BYTES_PER_SPECTRUM = 600
#: Non-zero values of a typical student fingerprint (mean 49.6 on the MassBank molecules; the NEIMS count
#: fingerprint has 24.9), each memoised as 4 bytes.
TYPICAL_NONZERO_FEATURES = 50
#: Fixed RAM of a memoised fingerprint: the numpy array object and its dict entry.
MEMO_ENTRY_BYTES = 200
#: Share of the RAM a plan may take: the model, optimiser, batches and the OS need the rest.
RAM_SHARE = 0.5


@dataclass
class MemoryPlan:
    """Estimated RAM of each way to hold ``n_spectra`` spectra."""

    n_spectra: int
    n_bins: int
    n_features: int
    bytes_per_spectrum: dict[str, float]
    ram_bytes: float | None = None
    num_workers: int = 0

    def total_bytes(self, mode: str) -> float:
        """RAM of one mode; the lazy dataset's memoised features are held once per DataLoader process."""
        per_spectrum = self.bytes_per_spectrum[mode]
        if mode == "lazy_memoized":
            processes = max(1, self.num_workers)
            per_spectrum = METADATA_BYTES_PER_SPECTRUM + (per_spectrum - METADATA_BYTES_PER_SPECTRUM) * processes
        return per_spectrum * self.n_spectra

    def recommendation(self) -> str:
        """Which way to train, given the RAM (or, without a RAM size, the smallest that keeps training fast)."""
        if self.ram_bytes is None:
            return ("lazy_memoized (the default): a fraction of in_memory's RAM at the speed of featurising each "
                    "molecule once; give --ram-gb to check it fits")
        budget = RAM_SHARE * self.ram_bytes
        if self.total_bytes("lazy_memoized") <= budget:
            return (f"lazy_memoized (the default, data.memoize_features: true) fits in {_gb(budget)} "
                    f"({RAM_SHARE:.0%} of the RAM)")
        if self.total_bytes("lazy") <= budget:
            return (f"lazy with data.memoize_features: false: the memoised fingerprints need "
                    f"{_gb(self.total_bytes('lazy_memoized'))}, more than {_gb(budget)}; molecules are then "
                    "featurised on every read (slower epochs)")
        return (f"none fits in {_gb(budget)}: even the metadata needs {_gb(self.total_bytes('lazy'))}; "
                "split the data into several caches or use a machine with more RAM")


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1024**3:.2f} GB"


def estimate(n_spectra: int, n_bins: int, n_features: int, ram_gb: float | None = None,
             num_workers: int = 0) -> MemoryPlan:
    """Bytes per spectrum of each mode for spectra of ``n_bins`` bins and fingerprints of ``n_features``.

    Parameters
    ----------
    n_spectra
        Spectra (one per row of the cache; a molecule with several spectra counts several times in
        ``in_memory`` and once in the memoised fingerprints, which this estimate ignores).
    n_bins
        ``max_mz + 1``.
    n_features
        Fingerprint length (``Featurizer.size``).
    ram_gb
        RAM of the machine, for the recommendation.
    num_workers
        DataLoader worker processes (each keeps its own memoised fingerprints).
    """
    per_spectrum = {
        "in_memory": METADATA_BYTES_PER_SPECTRUM + 4 * (n_bins + n_features),
        "lazy_memoized": METADATA_BYTES_PER_SPECTRUM + memoized_fingerprint_bytes(n_features),
        "lazy": METADATA_BYTES_PER_SPECTRUM,
    }
    return MemoryPlan(n_spectra, n_bins, n_features, per_spectrum,
                      None if ram_gb is None else ram_gb * 1024**3, num_workers)


def memoized_fingerprint_bytes(n_features: int) -> int:
    """Estimated RAM of one memoised fingerprint of ``n_features`` values
    (:func:`matchms_neims.featurize.compact_features`)."""
    return MEMO_ENTRY_BYTES + 4 * min(n_features, TYPICAL_NONZERO_FEATURES)


def current_rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return int(peak_rss_mb() * 1024**2)


def load_and_measure(mode: str, cache_path: str, featurizer_config: dict, n_spectra: int) -> dict:
    """Load the first ``n_spectra`` spectra of a cache one way and return the growth of the resident memory.

    ``in_memory`` stacks all spectra and fingerprints into float32 arrays; the lazy modes read every item of
    the dataset once, as one training epoch does, and keep the dataset.
    """
    from matchms_neims.chemistry import parse_smiles
    from matchms_neims.featurize import Featurizer
    from matchms_neims_training.data.cache import CacheMetadata, read_spectra
    from matchms_neims_training.data.dataset import LazyMassSpecDataset

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    featurizer = Featurizer(**featurizer_config)
    featurizer.features_of_mol(parse_smiles("CCO"))  # RDKit's one-off allocations before the baseline
    gc.collect()
    before = current_rss_bytes()
    metadata = CacheMetadata(cache_path)
    rows = np.arange(min(n_spectra, len(metadata.split)))
    if mode == "in_memory":
        spectra = read_spectra(cache_path, rows)
        features = np.zeros((len(rows), featurizer.size), dtype=np.float32)
        for row in rows:
            features[row] = featurizer.features_of_mol(parse_smiles(metadata.columns["smiles"][row]))
        held = (metadata, spectra, features)
    else:
        dataset = LazyMassSpecDataset(cache_path, None, featurizer, metadata, memoize_features=mode == "lazy_memoized")
        dataset.indices = rows
        for item in range(len(dataset)):
            dataset[item]
        held = dataset
    gc.collect()
    grown = current_rss_bytes() - before
    del held
    return {"mode": mode, "n_spectra": int(len(rows)), "rss_bytes": int(grown),
            "bytes_per_spectrum": grown / max(1, len(rows))}


def benchmark(cache_path: str, featurizer_config: dict, n_spectra: int, modes=MODES) -> list[dict]:
    """:func:`load_and_measure` for each mode, each in a fresh process."""
    return [run_in_fresh_process(load_and_measure, mode, str(cache_path), featurizer_config, n_spectra)
            for mode in modes]


def format_plan(plan: MemoryPlan, measured: list[dict] | None = None) -> str:
    """A table of estimated (and measured) RAM per mode, the lazy/in-memory ratios and the recommendation."""
    measured_of = {result["mode"]: result for result in measured or []}
    header = f"{'mode':<15}{'estimate':>12}{'per spectrum':>14}"
    if measured_of:
        header += f"{'measured':>12}{'per spectrum':>14}"
    lines = [f"{plan.n_spectra:,} spectra, {plan.n_bins} bins, {plan.n_features} fingerprint features", header]
    for mode in MODES:
        line = f"{mode:<15}{_mb(plan.total_bytes(mode)):>12}{plan.bytes_per_spectrum[mode]:>12,.0f} B"
        if mode in measured_of:
            line += f"{_mb(measured_of[mode]['rss_bytes']):>12}{measured_of[mode]['bytes_per_spectrum']:>12,.0f} B"
        lines.append(line)
    source = measured_of if len(measured_of) == len(MODES) else None
    for lazy in ("lazy_memoized", "lazy"):
        if source:
            ratio = source["in_memory"]["rss_bytes"] / max(1, source[lazy]["rss_bytes"])
            lines.append(f"in_memory / {lazy}: {ratio:.1f}x (measured)")
        else:
            ratio = plan.total_bytes("in_memory") / plan.total_bytes(lazy)
            lines.append(f"in_memory / {lazy}: {ratio:.1f}x (estimated)")
    lines.append(f"recommendation: {plan.recommendation()}")
    return "\n".join(lines)


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1024**2:,.1f} MB"


# ------------------------------------------------------------------------------------------------ command

def run_benchmark_memory(args: argparse.Namespace) -> int:
    from matchms_neims_training.config import TrainConfig
    from matchms_neims_training.data.cache import build_cache
    from matchms_neims_training.data.featurizer import make_featurizer

    config = TrainConfig.from_yaml(args.config)
    featurizer = make_featurizer(config)
    num_workers = config.data.num_workers if args.num_workers is None else args.num_workers
    measured = None
    if args.mode == "estimate":
        if args.n_compounds is None:
            raise ValueError("--mode estimate needs --n-compounds")
        n_spectra = args.n_compounds
    else:
        cache = build_cache(config.data)
        import h5py

        with h5py.File(cache, "r") as handle:
            n_spectra = min(args.n_compounds or len(handle["split"]), len(handle["split"]))
        measured = benchmark(str(cache), featurizer.to_config(), n_spectra)
    plan = estimate(n_spectra, config.data.max_mz + 1, featurizer.size, args.ram_gb, num_workers)
    if args.mode == "benchmark":
        for result in measured:
            print(f"{result['mode']:<15}{_mb(result['rss_bytes']):>12} for {result['n_spectra']:,} spectra "
                  f"({result['bytes_per_spectrum']:,.0f} B each)")
    else:
        print(format_plan(plan, measured))
    if args.output:
        report = {"mode": args.mode, "config": args.config, "n_spectra": n_spectra, "ram_gb": args.ram_gb,
                  "estimate": {mode: plan.total_bytes(mode) for mode in MODES}, "measured": measured,
                  "recommendation": plan.recommendation()}
        with atomic_output(args.output) as handle:
            json.dump(report, handle, indent=2)
    return 0
