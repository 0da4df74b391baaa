"""``matchms-neims train``, ``evaluate``, ``split``, ``ensemble`` and ``benchmark-memory`` (entry points).

Only argument parsers live here, so that ``matchms-neims --help`` loads none of the training code (torch,
Lightning): each handler imports its module when the command runs.
"""

from __future__ import annotations

import argparse
import logging

from matchms_neims.cli import add_quiet_option

logger = logging.getLogger(__name__)

TRAINABLE_MODELS = ("baseline", "teacher", "teacher-pretrain", "student")


def register_train(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model from a YAML config",
                                   description="Train a model; the config is a YAML file under training/configs/.")
    parser.add_argument("model", choices=TRAINABLE_MODELS, help="what to train")
    parser.add_argument("--config", required=True, help="YAML config (e.g. training/configs/baseline.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from <output_dir>/last.ckpt if present")
    parser.add_argument("--max-epochs", type=int, default=None, help="override optim.max_epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="ignore init_from in the config (teacher: no pretrained encoder)")
    parser.add_argument("--output-dir", default=None,
                        help="override trainer.output_dir and put the exported model there as model.pt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (logs stay)")
    parser.add_argument("--refit", action="store_true",
                        help="train the config's recipe on all cleaned spectra (train + val + test) for the epochs "
                             "its selection run chose (best epoch + 1, read from export.path); writes "
                             "<output_dir>_refit/<model file>")
    parser.add_argument("--refit-epochs", type=int, default=None,
                        help="with --refit: train this many epochs instead of reading them from the selection run")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from matchms_neims_training.config import TrainConfig

    config = TrainConfig.from_yaml(args.config).with_overrides(args.overrides)
    if args.max_epochs is not None:
        config.optim.max_epochs = args.max_epochs
    if args.from_scratch:
        config.init_from = ""
    if args.output_dir:
        config.trainer.output_dir = args.output_dir
        config.export.path = str(Path(args.output_dir) / Path(config.export.path).name)
    if args.refit_epochs is not None and not args.refit:
        raise SystemExit("--refit-epochs needs --refit")
    if args.refit:
        from matchms_neims_training.running.refit import refit_config

        config, provenance = refit_config(config, args.refit_epochs)
        logger.info("refit on all cleaned spectra for %d epochs into %s", provenance["epochs"], config.export.path)
    if args.model == "baseline":
        from matchms_neims_training.modules.baseline import train_baseline as train
    elif args.model == "teacher":
        from matchms_neims_training.modules.teacher import train_teacher as train
    elif args.model == "student":
        from matchms_neims_training.modules.student import train_student as train
    else:
        from matchms_neims_training.modules.pretrain import pretrain_teacher as train
    path = train(config, resume=args.resume, progress=not args.no_progress)
    print(f"model written to {path}")
    return 0


def register_split(subparsers) -> None:
    parser = subparsers.add_parser("split", help="write the cleaned spectra of one data split as MSP/MGF",
                                   description="Export a split of the training cache (e.g. the held-out test "
                                               "molecules' experimental spectra) for searching or evaluation.")
    parser.add_argument("--config", default="training/configs/baseline.yaml", help="training config (data section)")
    parser.add_argument("--split", choices=("train", "val", "test"), default="test", help="which split")
    parser.add_argument("-o", "--output", required=True, help="spectra file to write (.msp or .mgf)")
    parser.add_argument("--molecules", default=None, help="also write the split's unique molecules as .smi")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_split)


def _run_split(args: argparse.Namespace) -> int:
    from matchms_neims_training.config import TrainConfig
    from matchms_neims_training.data.cache import export_split

    config = TrainConfig.from_yaml(args.config)
    n_spectra, n_molecules = export_split(config.data, args.split, args.output, args.molecules)
    print(f"{n_spectra} spectra of {n_molecules} molecules ({args.split} split) written to {args.output}")
    return 0


def register_evaluate(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate a model on a held-out split or spectra file",
                                   description="Spectrum similarity, peak recall, library-matching Recall@K, "
                                               "inference time; JSON + table.")
    add_evaluate_arguments(parser)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument("--config", default="training/configs/baseline.yaml",
                        help="training config whose data cache and split are used (default: baseline.yaml)")
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="held-out split to evaluate (default: test)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set data.split_method=scaffold "
                             "--set data.cache=cache/massbank_scaffold.h5 (repeatable)")
    parser.add_argument("--spectra", default=None,
                        help="evaluate on this MSP/MGF file (with SMILES) instead of a split of the cache")
    parser.add_argument("--background", default=None,
                        help="with --spectra: experimental library spectra of other molecules (MSP/MGF)")
    parser.add_argument("--decoys", default=None, help="molecules (.smi/.csv/.sdf) predicted as library decoys")
    parser.add_argument("--max-decoys", type=int, default=None, help="use only the first N decoy molecules")
    parser.add_argument("--mz-power", type=float, default=1.0, help="library search m/z weighting (default 1)")
    parser.add_argument("--intensity-power", type=float, default=0.5, help="library search intensity weighting")
    parser.add_argument("--uncertainty-samples", type=int, default=30,
                        help="models with MC dropout: samples for the uncertainty calibration (0: skip)")
    parser.add_argument("--timing-molecules", type=int, default=200, help="molecules timed for latency (0: skip)")
    parser.add_argument("-o", "--output", default=None, help="write the report as JSON here")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from matchms_neims_training.commands.evaluate import run_evaluate

    return run_evaluate(args)


def register_ensemble(subparsers) -> None:
    parser = subparsers.add_parser("ensemble", help="combine trained models into one ensemble model file",
                                   description="Average several model files of one class (TeacherGNN or NeimsMLP; "
                                               "same featurizer, data and split) into one ensemble model file, "
                                               "usable for predict and evaluate; a teacher ensemble also as "
                                               "distill.teacher.")
    parser.add_argument("members", nargs="+", help="model files (.pt) of one class")
    parser.add_argument("-o", "--output", required=True, help="ensemble model file to write (.pt)")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="member weights (default: equal)")
    parser.add_argument("--name", default="neims-teacher-ensemble", help="model name recorded in the file")
    parser.add_argument("--average", default=None, metavar="{sqrt,intensity}",
                        help="average sqrt spectra or base-peak-scaled intensities (default: intensity for "
                             "formula-head members, whose isotope envelopes it keeps exact; else sqrt)")
    parser.add_argument("--full-precision", action="store_true",
                        help="store float32 weights (default: float16 when the members' weights are float16 values, "
                             "as in the files the training command exports)")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_ensemble)


def _run_ensemble(args: argparse.Namespace) -> int:
    from matchms_neims_training.commands.ensemble import build_ensemble

    path = build_ensemble(args.members, args.output, args.weights, args.name, average=args.average,
                          half_precision=False if args.full_precision else None)
    print(f"ensemble of {len(args.members)} models written to {path}")
    return 0


def register_benchmark_memory(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark-memory", help="RAM of the training data: in memory vs the lazy HDF5 dataset",
        description="estimate: RAM per mode for --n-compounds and --ram-gb; benchmark: load the cache each way "
                    "(fresh process each) and measure the resident memory; compare: both on the same spectra.")
    parser.add_argument("--mode", choices=("estimate", "benchmark", "compare"), default="compare")
    parser.add_argument("--config", default="training/configs/student_distill.yaml",
                        help="training config: its data cache and featurizer (default: the student's)")
    parser.add_argument("--n-compounds", type=int, default=None,
                        help="spectra to plan for (estimate) or to load (benchmark, compare; default: the cache)")
    parser.add_argument("--ram-gb", type=float, default=None, help="RAM of the training machine, for the advice")
    parser.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default: the config's)")
    parser.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_benchmark_memory)


def _run_benchmark_memory(args: argparse.Namespace) -> int:
    from matchms_neims_training.commands.benchmark_memory import run_benchmark_memory

    return run_benchmark_memory(args)
