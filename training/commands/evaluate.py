"""``matchms-neims evaluate``: evaluate a model on a held-out split of the training cache or on a spectra file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from matchms_neims.cleaning import clean_spectra
from matchms_neims.evaluation import SpectraSet, evaluate_model, format_report, report_to_json, spectra_set_from_spectra
from matchms_neims.io import load_spectra, read_molecules
from matchms_neims.predictor import NeimsPredictor
from matchms_neims.utils import atomic_output
from matchms_neims_training.config import TrainConfig
from matchms_neims_training.data.cache import CacheMetadata, build_cache, read_spectra
from matchms_neims_training.data.splits import SPLITS

logger = logging.getLogger(__name__)


def split_sets(config: TrainConfig, split: str) -> tuple[SpectraSet, SpectraSet]:
    """Queries (the split's spectra) and background (all spectra of the other splits) from the cache."""
    cache = build_cache(config.data)
    metadata = CacheMetadata(cache)
    split_code = SPLITS.index(split)
    sets = []
    for indices in (np.flatnonzero(metadata.split == split_code), np.flatnonzero(metadata.split != split_code)):
        sets.append(SpectraSet(read_spectra(cache, indices), list(metadata.columns["smiles"][indices]),
                               list(metadata.columns["molecule_key"][indices]),
                               list(metadata.columns["compound_name"][indices]),
                               metadata.nominal_mass[indices].astype(np.float64)))
    return sets[0], sets[1]


def file_set(path: str, config: TrainConfig) -> SpectraSet:
    spectra, report = clean_spectra(load_spectra(path), config.data.cleaning)
    logger.info("%s: %s", path, report)
    return spectra_set_from_spectra(spectra, config.data.max_mz)


def split_leak_warning(model_metadata: dict, config: TrainConfig) -> str | None:
    """A warning when the model was not trained on the training part of the split that is evaluated.

    A model trained on another split (or refit on all data) may have seen the held-out molecules, and its
    figures there would flatter it.
    """
    split = model_metadata.get("split")
    if not isinstance(split, dict):
        return None
    expected = {"method": config.data.split_method, "fractions": list(config.data.split_fractions),
                "seed": config.data.split_seed}
    if split.get("method") == "all":
        return "the model was refit on all cleaned spectra: it has seen every held-out molecule of this split"
    if split.get("method") != expected["method"] or split.get("seed") != expected["seed"] or \
            [float(x) for x in split.get("fractions", [])] != [float(x) for x in expected["fractions"]]:
        return (f"the model was trained on split {split}, not on {expected}: its training molecules may be among "
                "the queries")
    return None


def run_evaluate(args: argparse.Namespace) -> int:
    config = TrainConfig.from_yaml(args.config).with_overrides(args.overrides)
    predictor = NeimsPredictor(args.model)
    if args.spectra:
        queries = file_set(args.spectra, config)
        background = file_set(args.background, config) if args.background else None
    else:
        queries, background = split_sets(config, args.split)
    decoys = None
    if args.decoys:
        decoys = [m.smiles for m in read_molecules(args.decoys)]
        decoys = decoys[: args.max_decoys] if args.max_decoys else decoys
    report = evaluate_model(predictor, queries, background, decoys, mz_power=args.mz_power,
                            intensity_power=args.intensity_power, timing_molecules=args.timing_molecules,
                            uncertainty_samples=args.uncertainty_samples)
    report["evaluated_on"] = args.spectra or f"{config.data.spectra} ({args.split} split, {config.data.split_method})"
    if not args.spectra:
        warning = split_leak_warning(predictor.loaded.metadata, config)
        if warning:
            logger.warning("%s", warning)
            report["split_warning"] = warning
    print(format_report(report))
    if args.output:
        with atomic_output(Path(args.output)) as handle:
            handle.write(report_to_json(report))
        print(f"\nreport written to {args.output}")
    return 0
