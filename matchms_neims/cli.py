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


#: approximate_index.KINDS, not imported: --help imports neither faiss nor matchms
APPROXIMATE_KINDS = ("ivf-pq", "ivf-flat", "hnsw")
QUIET_HELP = "no progress bars and no informational log lines (warnings and errors stay)"


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` after a command too (``matchms-neims predict ... -q``), for every command, the training
    package's included; SUPPRESS keeps the value given before the command."""
    parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)


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
    parser.add_argument("--index", nargs="?", const="", default=None, metavar="INDEX",
                        help="also write the library index (`matchms-neims index`, default weighting) of the "
                             "library, right after it is written, from that file: to INDEX, or beside it as "
                             "LIBRARY.nidx")
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
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_predict)


def _run_predict(args) -> int:
    import torch

    from matchms_neims.predictor import NeimsPredictor

    # before the model loads and the molecules are predicted, not after (a late failure loses the run's work)
    if args.index is not None:
        from matchms_neims.library_index import default_index_path

        args.index = args.index or str(default_index_path(args.output))
    check_output_paths({"-o/--output": args.output, "--errors": args.errors, "--index": args.index},
                       {"the input": args.input})
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
            resume=args.resume, skip_duplicates=not args.keep_duplicates, progress=not args.quiet)
        if summary is not None:  # global rank 0
            print(summary)
            _index_predicted_library(args)
        return 0
    summary = build_library(args.input, args.output, file_format=args.format, predictor=predictor,
                            batch_size=args.batch_size, chunk_size=args.chunk_size, errors_path=args.errors,
                            min_relative_intensity=args.min_intensity, skip_duplicates=not args.keep_duplicates,
                            progress=not args.quiet)
    print(summary)
    _index_predicted_library(args)
    return 0


def _index_predicted_library(args) -> None:
    """``predict --index``: index the library just written, read back from its file (so that the index holds exactly
    what a search of that file sees, and records its SHA-256)."""
    if args.index is None:
        return
    from matchms_neims.library_index import build_index

    print(build_index(args.output, args.index, progress=not args.quiet))  # kept if the library came out the same


def _add_index(subparsers) -> None:
    chunk_rows = 16384  # library_index.DEFAULT_CHUNK_ROWS, not imported: --help imports neither matchms nor torch
    parser = subparsers.add_parser(
        "index", help="write the library index of an MSP/MGF library (binary, memory-mapped, for fast search)",
        description="Library MSP/MGF -> library index: the binned, weighted, normalised spectra with the metadata "
                    "of hits, the settings and the source's SHA-256, searched memory-mapped by `search` with "
                    "the same hits as the file. Written streamed and atomically; an index already built from the "
                    "same file with the same settings is kept (unless --force).")
    parser.add_argument("library", help="library spectra (.msp or .mgf, optionally .gz); or, with --faiss, a library "
                                        "index already built (only its approximate index is written then)")
    parser.add_argument("-o", "--output", default=None, help="index file to write (default: LIBRARY.nidx beside it)")
    parser.add_argument("--mz-power", type=float, default=None, help="cosine m/z weighting exponent (default 1)")
    parser.add_argument("--intensity-power", type=float, default=None,
                        help="cosine intensity weighting exponent (default 0.5)")
    parser.add_argument("--max-mz", type=int, default=None, help="highest nominal m/z kept (default 1000)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage of the vector values: float32 (default; the file's scores) or float16 (a "
                             "quarter smaller; scores within about 3e-4, docs/performance.md)")
    parser.add_argument("--chunk-size", type=int, default=chunk_rows,
                        help=f"spectra binned and written together (default {chunk_rows}; bounds memory)")
    parser.add_argument("--errors", default=None,
                        help="write the records skipped as unreadable (file, line, record, reason) to this TSV")
    parser.add_argument("--force", action="store_true", help="rebuild even an index that is up to date")
    approximate = parser.add_argument_group(
        "approximate index (FAISS)", "also write a FAISS inner-product index of the library index's vectors, for "
                                     "`search --approximate` (pip install \"matchms-neims[faiss]\")")
    approximate.add_argument("--faiss", choices=APPROXIMATE_KINDS, default=None, metavar="KIND",
                             help="ivf-flat (float32 vectors: 2 GB per million spectra; measured in "
                                  "docs/performance.md), ivf-pq (64 bytes per spectrum: the one that fits 10 M "
                                  "spectra and more in RAM) or hnsw (a graph of float32 vectors)")
    approximate.add_argument("--faiss-output", default=None, metavar="PATH",
                             help="FAISS file to write (default: INDEX.nidx.faiss beside the library index)")
    approximate.add_argument("--nlist", type=int, default=None,
                             help="inverted lists of ivf-pq/ivf-flat (default: the power of two nearest 2 sqrt(n))")
    approximate.add_argument("--pq-m", type=int, default=64, help="ivf-pq: bytes (sub-quantizers) per spectrum")
    approximate.add_argument("--hnsw-m", type=int, default=32, help="hnsw: neighbours per node (default 32)")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_index)


def _run_index(args) -> int:
    from matchms_neims.library_index import build_index, default_index_path, is_library_index
    from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
    from matchms_neims.spectral_matrix import SEARCH_MAX_MZ

    if args.faiss is not None and is_library_index(args.library):  # an index already built: its FAISS file only
        if args.output is not None:
            raise ValueError(f"{args.library} is a library index already; -o/--output names a library index to "
                             f"write: give --faiss-output for the FAISS file")
        _build_approximate(args, args.library)
        return 0
    output = args.output or str(default_index_path(args.library))
    faiss_output = None
    if args.faiss is not None:
        from matchms_neims.approximate_index import default_approximate_path, import_faiss

        import_faiss()  # before the index is built, not after
        faiss_output = args.faiss_output or str(default_approximate_path(output))
    check_output_paths({"-o/--output": output, "--errors": args.errors, "--faiss-output": faiss_output},
                       {"the library": args.library})
    summary = build_index(
        args.library, output, max_mz=SEARCH_MAX_MZ if args.max_mz is None else args.max_mz,
        mz_power=NEIMS_MZ_POWER if args.mz_power is None else args.mz_power,
        intensity_power=NEIMS_INTENSITY_POWER if args.intensity_power is None else args.intensity_power,
        dtype=args.dtype, chunk_rows=args.chunk_size, errors_path=args.errors, force=args.force,
        progress=not args.quiet)
    print(summary)
    if args.faiss is not None:
        _build_approximate(args, output)
    return 0


def _build_approximate(args, index: str) -> None:
    """``index --faiss KIND``: the approximate index of the library index ``index``."""
    from matchms_neims.approximate_index import build_approximate_index, default_approximate_path

    output = args.faiss_output or str(default_approximate_path(index))
    check_output_paths({"--faiss-output": output}, {"the library index": index})
    if not args.quiet:
        logger.info("building the %s approximate index of %s", args.faiss, index)
    print(build_approximate_index(index, output, kind=args.faiss, nlist=args.nlist, pq_m=args.pq_m,
                                  hnsw_m=args.hnsw_m, force=args.force))


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
    add_quiet_option(parser)
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
    parser.add_argument("library", help="library spectra (.msp or .mgf), experimental or predicted, or a library "
                                        "index of one (`matchms-neims index`: read memory-mapped, same hits; the "
                                        "weighting and --max-mz it was built with are used unless given), or a "
                                        "folder of index files that are one library (in name order; sharded search)")
    parser.add_argument("-o", "--output", required=True, help="hits table to write (.tsv)")
    parser.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    parser.add_argument("--errors", default=None,
                        help="write the records skipped as unreadable (file, line, record, reason) to this TSV")
    parser.add_argument("--mz-power", type=float, default=None, help="cosine m/z weighting exponent")
    parser.add_argument("--intensity-power", type=float, default=None, help="cosine intensity weighting exponent")
    parser.add_argument("--max-mz", type=int, default=None,
                        help="highest nominal m/z compared (default 1000); peaks above it are not compared, and "
                             "their number per file is logged")
    parser.add_argument("--mass-window", type=float, default=None, metavar="DA",
                        help="only library entries within DA of the query's nominal mass (MW / nominal_mass / "
                             "exact_mass metadata; queries without a mass are compared with every entry)")
    parser.add_argument("--library-block-size", type=int, default=100_000,
                        help="library spectra read and scored at a time (default 100000; bounds memory)")
    approximate = parser.add_argument_group(
        "approximate search (FAISS)", "candidates from the FAISS index of a library index (`index --faiss`), "
                                      "rescored exactly: scores and matched peaks are exact, an exact hit may be "
                                      "missed; exact search is the default")
    approximate.add_argument("--approximate", action="store_true",
                             help="search through the library index's FAISS file (LIBRARY.nidx.faiss)")
    approximate.add_argument("--faiss", default=None, metavar="PATH",
                             help="the FAISS file (default: beside the library index; implies --approximate)")
    approximate.add_argument("--nprobe", type=int, default=None,
                             help="ivf-pq/ivf-flat: inverted lists visited per query (default 32; more: slower, "
                                  "higher recall)")
    approximate.add_argument("--ef-search", type=int, default=None, help="hnsw: nodes explored per query (default 128)")
    approximate.add_argument("--candidates", type=int, default=None,
                             help="entries per query taken from FAISS and rescored exactly (default: 10 x top-k for "
                                  "ivf-pq, top-k + 8 otherwise)")
    sharding = parser.add_argument_group(
        "sharded search", "with any of these options a library index is searched in shards of rows through "
                          "Lightning (Trainer.predict), one CPU process per device and node, then merged: the hits "
                          "are those of one process")
    sharding.add_argument("--devices", default=None, help="processes per node: a number, or 'auto' (default 1)")
    sharding.add_argument("--num-nodes", type=int, default=None, help="nodes (default 1)")
    sharding.add_argument("--shard-entries", type=int, default=None,
                          help="index rows per shard, a multiple of --library-block-size, the unit of resumption "
                               "(default: 2 shards per process)")
    sharding.add_argument("--resume", action="store_true",
                          help="continue an interrupted sharded search: finished shards are kept")
    report = parser.add_argument_group("visual report")
    report.add_argument("--report", default=None, metavar="REPORT.html",
                        help="also write a self-contained HTML report: per query its hits with score, matched "
                             "peaks, name, InChIKey, predicted or experimental, structure and mirror plot")
    report.add_argument("--report-hits", type=int, default=3, metavar="N",
                        help="hits per query pictured (structure and mirror plot) in the report; the other hits "
                             "are table rows (default 3)")
    report.add_argument("--report-queries", type=int, default=100, metavar="N",
                        help="queries shown in the report, the first N (default 100; 0: all; about 100 kB each)")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_search)


def _run_search(args) -> int:
    from pathlib import Path

    from matchms_neims.io import iter_records, write_problems
    from matchms_neims.search import library_file_size, search_library
    from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
    from matchms_neims.spectral_matrix import SEARCH_MAX_MZ

    check_output_paths({"-o/--output": args.output, "--errors": args.errors, "--report": args.report},
                       {"the queries": args.queries, "the library": args.library})
    if args.report_hits < 0 or args.report_queries < 0:
        raise ValueError(f"--report-hits and --report-queries must be 0 or more, got {args.report_hits} and "
                         f"{args.report_queries}")
    problems: list = []  # bad records of both files, skipped
    library = _search_library_input(args, problems)
    sharded = any(value is not None for value in (args.devices, args.num_nodes, args.shard_entries)) or args.resume
    try:
        if sharded:
            result = _search_sharded(args, library, problems)
            if result is None:  # not global rank 0: rank 0 writes the hits and reports
                return 0
        elif args.approximate or args.faiss:
            result = _search_approximate(args, library, problems)
        else:
            result = search_library(
                iter_records(args.queries, problems), library, top_k=args.top_k,
                mz_power=NEIMS_MZ_POWER if args.mz_power is None else args.mz_power,
                intensity_power=NEIMS_INTENSITY_POWER if args.intensity_power is None else args.intensity_power,
                max_mz=SEARCH_MAX_MZ if args.max_mz is None else args.max_mz,
                library_block_size=args.library_block_size, mass_window=args.mass_window,
                query_label=Path(args.queries).name, library_label=Path(args.library).name,
                progress=not args.quiet,
                expected_library_size=None if args.quiet or hasattr(library, "__len__")
                else library_file_size(args.library),
            )
    finally:
        library.close()  # an open library index (its memory maps), or the MSP/MGF reader (its file)
    if not sharded:  # a sharded search has written it
        result.to_tsv(args.output)
    print(f"{result.n_queries} queries searched against {result.n_library} library spectra; "
          f"hits written to {args.output}")
    if args.report:
        _write_search_report(args, result)
    if problems or args.errors:
        where = f": listed in {write_problems(problems, args.errors)}" if args.errors else " (see the log above)"
        print(f"{len(problems)} unreadable records skipped{where}")
    return 0


def _search_library_input(args, problems: list):
    """``search``'s library: an open library index, or the records of an MSP/MGF file.

    For an index, the weighting options and --max-mz not given are set to the index's (a given one that differs
    is refused by the search), and ``args.report_library`` to the MSP/MGF file it was built from (the report
    draws the hits' peaks); that file must still be there, with the size recorded in the index.
    """

    from pathlib import Path

    from matchms_neims.io import iter_records
    from matchms_neims.library_index import LibraryIndex, is_library_index

    args.report_library = args.library
    folder = Path(args.library).is_dir()
    if folder:  # a folder of index files, one library: searched in shards (sharded_search), in one process by default
        from matchms_neims.sharded_search import index_files

        if args.report:
            raise ValueError(f"--report needs one library index or file; {args.library} is a folder of indexes")
        args.devices = args.devices or 1
        index = LibraryIndex(index_files(args.library)[0])  # its settings; each file's are checked by the search
    elif not is_library_index(args.library):
        return iter_records(args.library, problems)
    else:
        index = LibraryIndex(args.library)
    try:
        _adopt_index_settings(args, index)
    except BaseException:
        index.close()
        raise
    return index


def _adopt_index_settings(args, index) -> None:
    """The index's weighting and --max-mz for the options not given; for --report, the library file it was built
    from (which must still be there, unchanged)."""
    from pathlib import Path

    max_mz, mz_power, intensity_power = index.settings
    args.max_mz = max_mz if args.max_mz is None else args.max_mz
    args.mz_power = mz_power if args.mz_power is None else args.mz_power
    args.intensity_power = intensity_power if args.intensity_power is None else args.intensity_power
    index.check_settings(args.max_mz, args.mz_power, args.intensity_power)
    if args.report:
        source = Path(index.source["path"])
        if not source.is_file() or source.stat().st_size != index.source["size"]:
            raise ValueError(f"--report draws the hits' peaks from the library file, and {args.library} was built "
                             f"from {source}, which is {'changed' if source.is_file() else 'missing'}; search that "
                             f"file or rebuild the index")
        args.report_library = str(source)


def _search_sharded(args, library, problems: list):
    """``search --devices/--num-nodes/--shard-entries/--resume``: the index searched in shards of rows by Lightning's
    processes (:mod:`matchms_neims.sharded_search`); the merged result on global rank 0, ``None`` on the others."""
    from matchms_neims.library_index import LibraryIndex
    from matchms_neims.sharded_search import search_sharded

    if not isinstance(library, LibraryIndex):
        raise ValueError(f"a sharded search (--devices, --num-nodes, --shard-entries, --resume) searches a library "
                         f"index or a folder of them; {args.library} is a spectra file: build one with "
                         f"`matchms-neims index {args.library}`")
    if args.approximate or args.faiss:
        raise ValueError("--approximate searches in one process; leave out the sharded search's options")
    devices = args.devices or 1
    return search_sharded(args.queries, args.library, args.output, top_k=args.top_k, max_mz=args.max_mz,
                          mz_power=args.mz_power, intensity_power=args.intensity_power,
                          mass_window=args.mass_window, library_block_size=args.library_block_size,
                          shard_entries=args.shard_entries,
                          devices=int(devices) if str(devices).isdigit() else devices,
                          num_nodes=args.num_nodes or 1, resume=args.resume, progress=not args.quiet,
                          problems=problems)


def _search_approximate(args, library, problems: list):
    """``search --approximate``: the candidates of the library index's FAISS file, rescored exactly."""
    from pathlib import Path

    from matchms_neims.approximate_index import search_approximate
    from matchms_neims.io import iter_records
    from matchms_neims.library_index import LibraryIndex

    if not isinstance(library, LibraryIndex):
        raise ValueError(f"--approximate searches a library index and its FAISS file; {args.library} is a spectra "
                         f"file: build them with `matchms-neims index {args.library} --faiss ivf-flat`")
    return search_approximate(
        iter_records(args.queries, problems), library, top_k=args.top_k, approximate=args.faiss,
        nprobe=args.nprobe, ef_search=args.ef_search, candidates=args.candidates, mz_power=args.mz_power,
        intensity_power=args.intensity_power, max_mz=args.max_mz, mass_window=args.mass_window,
        query_label=Path(args.queries).name, library_label=Path(args.library).name)


def _write_search_report(args, result) -> None:
    """``search --report``: the HTML report of the search just run (its records are read back from the files)."""
    from matchms_neims.report import write_report
    from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER

    mz_power = NEIMS_MZ_POWER if args.mz_power is None else args.mz_power
    intensity_power = NEIMS_INTENSITY_POWER if args.intensity_power is None else args.intensity_power
    settings = {"queries": args.queries, "library": args.library, "top-k": args.top_k,
                "weighting": f"m/z^{mz_power:g} \u00d7 intensity^{intensity_power:g}"}
    if args.mass_window is not None:
        settings["mass window"] = f"{args.mass_window:g} Da"
    write_report(result, args.queries, getattr(args, "report_library", args.library), args.report,
                 pictured_hits=args.report_hits,
                 max_queries=args.report_queries or None, max_mz=args.max_mz, settings=settings)
    shown = result.n_queries if not args.report_queries else min(args.report_queries, result.n_queries)
    print(f"report of {shown} of {result.n_queries} queries written to {args.report}")


def _add_plot(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw one mirror plot of a query spectrum against a library spectrum (PNG)",
        description="Query spectrum up, library spectrum down, binned to unit resolution as search bins them; "
                    "peaks at an m/z present in both are coloured. A record is chosen by SELECTOR: 'id:X' "
                    "(spectrum_id / DB#), 'name:X' (compound name, case-insensitive), 'index:N' (position among the "
                    "file's readable records, from 0, as search's library_index), or a bare value tried as "
                    "spectrum_id, then name, then index. The first matching record is used.")
    parser.add_argument("queries", help="query spectra (.msp or .mgf)")
    parser.add_argument("library", help="library spectra (.msp or .mgf)")
    parser.add_argument("--query", required=True, metavar="SELECTOR", help="the query record")
    parser.add_argument("--hit", default=None, metavar="SELECTOR",
                        help="the library record (default: the query's best hit in the library)")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--mz-power", type=float, default=None, help="cosine m/z weighting exponent of the score")
    parser.add_argument("--intensity-power", type=float, default=None,
                        help="cosine intensity weighting exponent of the score")
    parser.add_argument("--max-mz", type=int, default=None, help="highest m/z compared and drawn (default 1000)")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_plot)


def _run_plot(args) -> int:
    from matchms_neims.plotting import mirror_plot
    from matchms_neims.report import fetch_records, find_record
    from matchms_neims.search import search_library
    from matchms_neims.similarity import NeimsCosine
    from matchms_neims.spectra import NEIMS_INTENSITY_POWER, NEIMS_MZ_POWER
    from matchms_neims.spectral_matrix import SEARCH_MAX_MZ

    check_output_paths({"-o/--output": args.output}, {"the queries": args.queries, "the library": args.library})
    if not args.output.lower().endswith(".png"):
        raise ValueError(f"-o/--output {args.output}: the mirror plot is written as PNG; give a .png file name")
    weights = {"mz_power": NEIMS_MZ_POWER if args.mz_power is None else args.mz_power,
               "intensity_power": NEIMS_INTENSITY_POWER if args.intensity_power is None else args.intensity_power,
               "max_mz": SEARCH_MAX_MZ if args.max_mz is None else args.max_mz}
    query_index, query = find_record(args.queries, args.query, "query")
    if args.hit is None:
        best = search_library([query], args.library, top_k=1, **weights).hits[0]
        if not best:
            raise ValueError(f"the library {args.library} holds no readable spectra to compare query "
                             f"{query.name!r} with")
        hit_index = best[0].library_index
        hit = fetch_records(args.library, [hit_index])[hit_index]
    else:
        hit_index, hit = find_record(args.library, args.hit, "library")
    pair = NeimsCosine(**weights).pair(query, hit)
    score, matched_peaks = float(pair["score"]), int(pair["matches"])
    mirror_plot(query, hit, args.output, score=score, max_mz=weights["max_mz"])
    print(f"query {query.name!r} (record {query_index}) vs library {hit.name!r} (record {hit_index}): score "
          f"{score:.3f}, {matched_peaks} matched peaks; mirror plot written to {args.output}")
    return 0


def _add_pipeline(subparsers) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="run a matchms workflow YAML that names the plugin's filters and similarity",
        description="Run a matchms workflow (Pipeline YAML, e.g. from matchms.Pipeline.create_workflow) with the "
                    "plugin loaded, so that add_predicted_spectrum, the require_* filters and neimscosine are known. "
                    "Writes the top hits per query of the last score computation (TSV) and, beside them, the "
                    "workflow as run, with each model pinned by path and sha256 (OUT.workflow.yaml).")
    parser.add_argument("workflow", help="workflow YAML file")
    parser.add_argument("queries", help="query spectra (.msp/.mgf through the plugin's readers; other matchms formats)")
    parser.add_argument("references", nargs="?", default=None,
                        help="reference spectra (default: the queries against each other)")
    parser.add_argument("-o", "--output", required=True, help="top hits to write (.tsv)")
    parser.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    parser.add_argument("--scores", default=None, help="also write all scores as matchms JSON here")
    parser.add_argument("--errors", default=None, help="write unreadable input records to this TSV")
    add_quiet_option(parser)
    parser.set_defaults(handler=_run_pipeline)


def _run_pipeline(args) -> int:
    from matchms_neims.io import write_problems
    from matchms_neims.workflow import resolved_workflow_path, run_workflow

    inputs = {"the workflow": args.workflow, "the queries": args.queries}
    if args.references:
        inputs["the references"] = args.references
    check_output_paths({"-o/--output": args.output, "--scores": args.scores, "--errors": args.errors,
                        "the resolved workflow": str(resolved_workflow_path(args.output))}, inputs)
    summary = run_workflow(args.workflow, args.queries, args.references, args.output, top_k=args.top_k,
                           scores_json=args.scores, progress_bar=not args.quiet)
    print(f"{summary['n_queries']} queries scored against {summary['n_references']} references; "
          f"{summary['n_hits']} hits written to {args.output} (workflow as run: {resolved_workflow_path(args.output)})")
    problems = summary["problems"]
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
    add_quiet_option(parser)
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
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_predict(subparsers)
    _add_search(subparsers)
    _add_index(subparsers)
    _add_plot(subparsers)
    _add_export(subparsers)
    _add_pipeline(subparsers)
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
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("matchms").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").propagate = False  # Lightning prints through its own handler
    previous_handler = _stop_on_sigterm()
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm(loggers=[logging.getLogger()]):  # log lines above the bars, not glued to them
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
