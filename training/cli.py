"""``matchms-neims train`` and ``matchms-neims evaluate``, registered through entry points."""

from __future__ import annotations

import argparse
import logging

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
    parser.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from training.config import TrainConfig

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
        from training.refit import refit_config

        config, provenance = refit_config(config, args.refit_epochs)
        logger.info("refit on all cleaned spectra for %d epochs into %s", provenance["epochs"], config.export.path)
    if args.model == "baseline":
        from training.baseline import train_baseline as train
    elif args.model == "teacher":
        from training.teacher import train_teacher as train
    elif args.model == "student":
        from training.student import train_student as train
    else:
        from training.pretrain import pretrain_teacher as train
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
    parser.set_defaults(handler=_run_split)


def _run_split(args: argparse.Namespace) -> int:
    from training.config import TrainConfig
    from training.data import export_split

    config = TrainConfig.from_yaml(args.config)
    n_spectra, n_molecules = export_split(config.data, args.split, args.output, args.molecules)
    print(f"{n_spectra} spectra of {n_molecules} molecules ({args.split} split) written to {args.output}")
    return 0


def register_evaluate(subparsers) -> None:
    from training.evaluate import add_evaluate_arguments

    parser = subparsers.add_parser("evaluate", help="evaluate a model on a held-out split or spectra file",
                                   description="Spectrum similarity, peak recall, library-matching Recall@K, "
                                               "inference time; JSON + table.")
    add_evaluate_arguments(parser)

