"""The ``matchms-neims`` command line.

Sub-commands ``predict`` and ``search`` live here. Commands from other installed packages register
themselves through the ``matchms_neims.commands`` entry-point group (the ``training`` package adds
``train`` and ``evaluate`` that way), so this package never imports the training code directly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from importlib.metadata import entry_points

from matchms_neims import __version__
from matchms_neims.utils import available_cores, check_output_paths

logger = logging.getLogger("matchms_neims")


def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser("predict", help="predict EI spectra for molecules and write an in-silico library",
                                   description="Molecules (.smi, .csv, .sdf, .msp) -> in-silico library (MSP/MGF).")
    parser.add_argument("input", help="molecules: .smi/.txt (SMILES [name]), .csv/.tsv (smiles + name columns), "
                                      ".sdf, or .msp/.mgf (their SMILES metadata)")
    parser.add_argument("-o", "--output", required=True, help="library file to write (.msp or .mgf)")
    parser.add_argument("--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument("--format", choices=("msp", "mgf"), default=None, help="output format (default: from -o)")
    parser.add_argument("--batch-size", type=int, default=512, help="molecules per model call (default 512)")
    parser.add_argument("--chunk-size", type=int, default=4096, help="molecules read and written per chunk")
    parser.add_argument("--errors", default=None, help="write skipped records and reasons to this TSV file")
    parser.add_argument("--min-intensity", type=float, default=0.001,
                        help="drop predicted peaks below this fraction of the base peak (default 0.001)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: the backend's choice)")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="write every record; by default a molecule already written (same InChIKey) is skipped "
                             "and listed in --errors (with --devices: across all shards)")
    parser.add_argument("--featurize-workers", default="auto", metavar="N|auto",
                        help="featurise (RDKit) in N worker processes while the model runs; 'auto' (default): "
                             "half of the available cores (none on one core, or with --devices), the model "
                             "taking the other half unless --threads is given; 0: in this process")
    parser.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch",
                        help="run fingerprint models with PyTorch (default) or onnxruntime (pip install "
                             "'matchms-neims[onnx]'; checked against PyTorch when loaded), optionally with "
                             "int8-quantised weights (faster, spectra close to but not equal to PyTorch's)")
    parser.add_argument("--uncertainty", type=int, default=0, metavar="N",
                        help="models with MC-dropout (the teacher): average N stochastic passes and write a "
                             "prediction_uncertainty score per spectrum (default 0: off)")
    sharding = parser.add_argument_group(
        "sharded prediction", "with any of these options the molecules are predicted in shards through Lightning "
                              "(Trainer.predict), one process per device, then merged into the output")
    sharding.add_argument("--devices", default=None,
                          help="processes per node: a number, or 'auto' (default 1 when sharding)")
    sharding.add_argument("--num-nodes", type=int, default=None, help="nodes (default 1)")
    sharding.add_argument("--accelerator", default="cpu", help="cpu (default), gpu or auto")
    sharding.add_argument("--shard-size", type=int, default=None,
                          help="molecules per shard, the unit of resumption (default 10000)")
    sharding.add_argument("--resume", action="store_true",
                          help="continue an interrupted sharded run: finished shards are kept")
    parser.set_defaults(handler=_run_predict)


def _run_predict(args) -> int:
    import torch

    from matchms_neims.predictor import NeimsPredictor

    # before the model loads and the molecules are predicted, not after (a late failure loses the run's work)
    check_output_paths({"-o/--output": args.output, "--errors": args.errors}, {"the input": args.input})
    sharded = any(value is not None for value in (args.devices, args.num_nodes, args.shard_size)) or args.resume
    workers, threads = featurize_workers_and_threads(args.featurize_workers, args.threads, sharded)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with NeimsPredictor(args.model, uncertainty_samples=args.uncertainty, backend=args.backend,
                            threads=threads, featurize_workers=workers) as predictor:
            return _predict_library(args, predictor)
    finally:
        torch.set_num_threads(previous_threads)  # main() may run inside another program (or a test)


def featurize_workers_and_threads(workers: str | int, threads: int, sharded: bool = False) -> tuple[int, int]:
    """The featurisation workers and model threads of ``predict``.

    ``"auto"``: half of the available cores featurise (none on one core, or in sharded runs, whose processes
    share the cores already) and, unless ``threads`` is given, the model takes the rest. Measured on 2 cores:
    1 worker + 1 thread predicts 2,382 molecules/s with the student against 1,875 with 2 threads and no
    worker (docs/performance.md).
    """
    cores = available_cores()
    if str(workers) == "auto":
        workers = 0 if sharded or cores < 2 else cores // 2
    workers = int(workers)
    if workers < 0:
        raise ValueError(f"--featurize-workers must be 0 or more, or auto; got {workers}")
    if workers and not threads:
        threads = max(1, cores - workers)
    return workers, threads


def _predict_library(args, predictor) -> int:
    from matchms_neims.library import build_library

    if any(value is not None for value in (args.devices, args.num_nodes, args.shard_size)) or args.resume:
        from matchms_neims.sharded import predict_sharded

        devices = args.devices or 1
        summary = predict_sharded(
            args.input, args.output, predictor, args.format, int(devices) if str(devices).isdigit() else devices,
            num_nodes=args.num_nodes or 1, accelerator=args.accelerator,
            shard_size=10_000 if args.shard_size is None else args.shard_size, batch_size=args.batch_size,
            chunk_size=args.chunk_size, errors_path=args.errors, min_relative_intensity=args.min_intensity,
            resume=args.resume, skip_duplicates=not args.keep_duplicates)
        if summary is not None:  # global rank 0
            print(summary)
        return 0
    summary = build_library(args.input, args.output, file_format=args.format, predictor=predictor,
                            batch_size=args.batch_size, chunk_size=args.chunk_size, errors_path=args.errors,
                            min_relative_intensity=args.min_intensity, skip_duplicates=not args.keep_duplicates)
    print(summary)
    return 0


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser("export", help="export a fingerprint model to ONNX or TorchScript",
                                   description="Model file -> ONNX (onnxruntime) or TorchScript, checked against "
                                               "PyTorch on reference molecules before it is written.")
    parser.add_argument("-o", "--output", required=True, help="file to write (.onnx, or .pt for TorchScript)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                        help="export format (default: onnx for a .onnx output, else torchscript)")
    parser.add_argument("--model", default=None, help="model file (default: the bundled model)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at least 14)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed difference to PyTorch's outputs (default 1e-4)")
    parser.set_defaults(handler=_run_export)


def _run_export(args) -> int:
    from matchms_neims.export import export_model

    file_format = args.format or ("onnx" if args.output.lower().endswith(".onnx") else "torchscript")
    result = export_model(args.output, file_format, args.model, opset=args.opset, tolerance=args.tolerance)
    differences = ", ".join(f"{name} {value:.2g}" for name, value in result["max_abs_difference"].items())
    print(f"{file_format} model written to {result['path']} (outputs {', '.join(result['outputs'])}; "
          f"largest difference to PyTorch: {differences})")
    return 0


def _add_search(subparsers) -> None:
    parser = subparsers.add_parser("search", help="search query spectra against a spectral library",
                                   description="Query MSP/MGF vs library MSP/MGF -> top-k hits per query (TSV).")
    parser.add_argument("queries", help="query spectra (.msp or .mgf)")
    parser.add_argument("library", help="library spectra (.msp or .mgf), experimental or predicted")
    parser.add_argument("-o", "--output", required=True, help="hits table to write (.tsv)")
    parser.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    parser.add_argument("--errors", default=None,
                        help="write the records skipped as unreadable (file, line, record, reason) to this TSV")
    parser.add_argument("--mz-power", type=float, default=None, help="cosine m/z weighting exponent")
    parser.add_argument("--intensity-power", type=float, default=None, help="cosine intensity weighting exponent")
    parser.add_argument("--max-mz", type=int, default=None, help="highest m/z compared (default 1000)")
    parser.add_argument("--mass-window", type=float, default=None, metavar="DA",
                        help="only library entries within DA of the query's nominal mass (MW / nominal_mass / "
                             "exact_mass metadata; queries without a mass are compared with every entry)")
    parser.add_argument("--library-block-size", type=int, default=100_000,
                        help="library spectra read and scored at a time (default 100000; bounds memory)")
    parser.set_defaults(handler=_run_search)


def _run_search(args) -> int:
    from matchms_neims.io import iter_records, write_problems
    from matchms_neims.search import DEFAULT_INTENSITY_POWER, DEFAULT_MAX_MZ, DEFAULT_MZ_POWER, search_library

    check_output_paths({"-o/--output": args.output, "--errors": args.errors},
                       {"the queries": args.queries, "the library": args.library})
    problems: list = []  # bad records of both files, skipped
    result = search_library(
        iter_records(args.queries, problems), iter_records(args.library, problems), top_k=args.top_k,
        mz_power=DEFAULT_MZ_POWER if args.mz_power is None else args.mz_power,
        intensity_power=DEFAULT_INTENSITY_POWER if args.intensity_power is None else args.intensity_power,
        max_mz=DEFAULT_MAX_MZ if args.max_mz is None else args.max_mz,
        library_block_size=args.library_block_size, mass_window=args.mass_window,
    )
    result.to_tsv(args.output)
    print(f"{result.n_queries} queries searched against {result.n_library} library spectra; "
          f"hits written to {args.output}")
    if problems or args.errors:
        where = f": listed in {write_problems(problems, args.errors)}" if args.errors else " (see the log above)"
        print(f"{len(problems)} unreadable records skipped{where}")
    return 0


def _add_benchmark(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="measure latency, throughput, memory and size of models and backends",
        description="Each model and backend runs in a fresh process: one molecule at a time (featurisation "
                    "included and excluded), then batches of each size. Writes benchmark.json and benchmark.png.")
    parser.add_argument("molecules", help="molecule file (.smi, .csv, .sdf, ...) to predict")
    parser.add_argument("-o", "--output-dir", required=True, help="folder of benchmark.json and benchmark.png")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=PATH",
                        help="model to measure, repeatable (default: the bundled model as 'bundled')")
    parser.add_argument("--backend", nargs="+", choices=("torch", "onnx", "onnx-int8"),
                        default=["torch", "onnx", "onnx-int8"],
                        help="backends to measure (default: all three; graph models run with torch only)")
    parser.add_argument("--n-molecules", type=int, default=8192,
                        help="molecules read; a batch size B predicts max(2048, 256 B) of them for throughput")
    parser.add_argument("--latency-molecules", type=int, default=300, help="molecules timed one at a time")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per case (default 2)")
    parser.add_argument("--featurize-workers", type=int, nargs="+", default=[0], metavar="N",
                        help="featurisation worker processes, one case per value (default 0); they take their "
                             "cores from --threads")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.set_defaults(handler=_run_benchmark)


def _run_benchmark(args) -> int:
    from matchms_neims.benchmark import BenchmarkCase, format_case, read_benchmark_smiles, run_benchmark

    models = []
    for item in args.model or ["bundled="]:
        label, separator, path = item.partition("=")
        if not separator or not label:
            raise ValueError(f"--model takes LABEL=PATH, got {item!r}")
        models.append((label, path or None))
    cases = [BenchmarkCase(label, path, backend, workers) for label, path in models for backend in args.backend
             for workers in args.featurize_workers]
    smiles = read_benchmark_smiles(args.molecules, args.n_molecules)
    report = run_benchmark(cases, smiles, args.output_dir, latency_molecules=args.latency_molecules,
                           batch_sizes=args.batch_sizes, threads=args.threads, plot=not args.no_plot)
    for result in report["results"]:
        print(format_case(result))
    print(f"results written to {args.output_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matchms-neims", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"matchms-neims {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_predict(subparsers)
    _add_search(subparsers)
    _add_export(subparsers)
    _add_benchmark(subparsers)
    for entry_point in entry_points(group="matchms_neims.commands"):
        try:
            entry_point.load()(subparsers)
        except ImportError as error:  # an optional extension is installed without its dependencies
            logger.debug("command %s unavailable: %s", entry_point.name, error)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("matchms").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints through its own handler
    previous_handler = _stop_on_sigterm()
    try:
        return int(args.handler(args) or 0)
    except (FileNotFoundError, ValueError, ImportError) as error:
        logger.error("%s", error)
        return 2
    except Terminated:
        logger.error("stopped by SIGTERM; no partial output was left (files being written were removed)")
        return 128 + signal.SIGTERM
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so that every ``with`` block (atomic outputs, worker pools) unwinds.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` blocks do not swallow it.
    """


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _stop_on_sigterm():
    """Make SIGTERM unwind the command (as Ctrl-C does) instead of killing it mid-write; the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":
    sys.exit(main())
