"""Inference benchmarks: latency, throughput, peak memory and size on disk of models and backends.

Every (model, backend) case runs in a fresh process of its own, so its peak resident memory is its own
and one case's caches and threads do not favour the next. ``matchms-neims benchmark`` writes the
results as JSON and as a plot of latency and throughput.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import platform
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from matchms_neims.timing import batch_throughput, single_molecule_latency
from matchms_neims.utils import atomic_output, atomic_path, available_cores

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = (1, 4, 16, 64, 256, 1024)


@dataclass
class BenchmarkCase:
    """One model run by one backend.

    Parameters
    ----------
    label
        Name in the results (``baseline``, ``student``, ...).
    model
        Model file; ``None`` for the bundled model.
    backend
        ``"torch"``, ``"onnx"`` or ``"onnx-int8"`` (:class:`~matchms_neims.predictor.NeimsPredictor`).
    featurize_workers
        Featurisation worker processes (``NeimsPredictor(featurize_workers=...)``); they take their cores
        from the case's threads, so the model gets ``threads - featurize_workers`` (at least 1).
    """

    label: str
    model: str | None
    backend: str = "torch"
    featurize_workers: int = 0


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux and macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if platform.system() == "Darwin" else peak / 1024


def run_case(case: BenchmarkCase, smiles: Sequence[str], latency_molecules: int = 300,
             batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, threads: int = 2) -> dict:
    """Benchmark one case in this process: model size, latency, throughput per batch size and peak memory."""
    import torch

    from matchms_neims.checkpoint import bundled_model_path
    from matchms_neims.predictor import NeimsPredictor

    model_threads = max(1, threads - case.featurize_workers)
    torch.set_num_threads(model_threads)
    start = time.perf_counter()
    predictor = NeimsPredictor(case.model, backend=case.backend, threads=model_threads,
                               featurize_workers=case.featurize_workers)
    predictor.start_featurize_workers()  # their start-up is not part of any timing
    load_s = time.perf_counter() - start
    path = Path(case.model) if case.model else bundled_model_path()
    parameters = sum(p.numel() for p in predictor.loaded.model.parameters())
    result = {**asdict(case), "model_name": predictor.model_name, "model_class": predictor.loaded.model_class,
              "model_file_mb": path.stat().st_size / 1e6, "parameters": parameters,
              "fp32_size_mb": parameters * 4 / 1e6, "threads": threads, "model_threads": model_threads,
              "load_s": load_s}
    result["latency"] = single_molecule_latency(predictor, list(smiles[:latency_molecules]))
    result["throughput_mol_per_s"] = {str(size): batch_throughput(predictor, list(smiles), size)
                                      for size in batch_sizes}
    result["peak_rss_mb"] = peak_rss_mb()  # of this process; featurisation workers are not counted
    predictor.close()
    if case.backend != "torch":  # after the memory peak: the reference model would add to it
        result["cosine_to_torch"] = cosine_to_torch(predictor, list(smiles[:latency_molecules]))
    return result


def cosine_to_torch(predictor, smiles: Sequence[str]) -> dict[str, float]:
    """Mean and minimum sqrt-intensity cosine (``cosine_sqrt``) of a predictor's spectra to the torch backend's."""
    from matchms_neims.metrics import COSINE_WEIGHTINGS, paired_cosine
    from matchms_neims.predictor import NeimsPredictor

    reference = NeimsPredictor(predictor.loaded)
    batch = predictor.predict_batch(smiles)
    expected = reference.predict_batch(smiles).vectors
    cosines = paired_cosine(batch.vectors, expected, *COSINE_WEIGHTINGS["sqrt"])
    return {"mean": float(np.mean(cosines)), "min": float(np.min(cosines))}


def processes_with(marker: str) -> list[int]:
    """PIDs of live (not zombie) processes whose environment holds ``marker`` (Linux ``/proc``).

    Start a command with a unique environment variable and this finds it and every process it started, orphans
    included (children inherit the environment): what the fault-injection benchmark and the signal tests use to
    check that nothing outlives a run.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def run_in_fresh_process(function, *arguments):
    """``function(*arguments)`` in a new interpreter (spawned), so that its memory peak and caches are its own.

    ``function`` must be importable at module level, and its arguments and result picklable. The process is
    not a daemon, so it may start processes of its own (featurisation workers).
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        return executor.submit(function, *arguments).result()


def _run_case_in_child(case: BenchmarkCase, smiles: list[str], latency_molecules: int, batch_sizes: list[int],
                       threads: int) -> dict:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    logging.basicConfig(level=logging.WARNING)
    try:
        return run_case(case, smiles, latency_molecules, batch_sizes, threads)
    except (ValueError, ImportError) as error:
        return {**asdict(case), "error": str(error)}


def _facts_this_platform_lacks():
    """Ignore facts this platform cannot give (no /proc, no onnxruntime)."""
    return contextlib.suppress(OSError, ValueError, StopIteration, ImportError)


def machine_description() -> dict:
    """CPU model, logical cores, memory and library versions of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    memory_gb = None
    with _facts_this_platform_lacks():
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    with _facts_this_platform_lacks():
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 1024**3, 1)
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    with _facts_this_platform_lacks():
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "available_cores": available_cores(), "memory_gb": memory_gb,
            "system": platform.platform(), "versions": versions}


def read_benchmark_smiles(path: str | os.PathLike, n_molecules: int) -> list[str]:
    """The first ``n_molecules`` SMILES of a molecule file (any format :func:`read_molecules` reads)."""
    from matchms_neims.io import read_molecules

    smiles = [molecule.smiles for molecule in islice(read_molecules(path), n_molecules) if molecule.smiles]
    if not smiles:
        raise ValueError(f"no molecules in {path}")
    return smiles


def run_benchmark(cases: Sequence[BenchmarkCase], smiles: Sequence[str], output_dir: str | os.PathLike,
                  latency_molecules: int = 300, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                  threads: int = 2, plot: bool = True) -> dict:
    """Benchmark every case in a fresh process and write ``benchmark.json`` (and ``benchmark.png``).

    Parameters
    ----------
    cases
        Models and backends to measure.
    smiles
        Molecules: the first ``latency_molecules`` are timed one at a time; all of them are predicted
        in batches of each size in ``batch_sizes`` for the throughput.
    output_dir
        Folder of the results (created).
    threads
        CPU threads for every case (torch and onnxruntime).
    plot
        Also draw latency and throughput (needs matplotlib).

    Returns
    -------
    dict
        ``{"machine": ..., "settings": ..., "results": [one dict per case]}``; a case that cannot run
        (an ONNX export of a graph model, a missing onnxruntime) has an ``error`` entry instead.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        logger.info("benchmarking %s", case_name(asdict(case)))
        result = run_in_fresh_process(_run_case_in_child, case, list(smiles), latency_molecules, list(batch_sizes),
                                      threads)
        if "error" in result:
            logger.warning("%s: %s", case_name(result), result["error"])
        else:
            logger.info("%s", format_case(result))
        results.append(result)
    report = {"machine": machine_description(),
              "settings": {"molecules": len(smiles), "latency_molecules": min(latency_molecules, len(smiles)),
                           "batch_sizes": list(batch_sizes), "threads": threads},
              "results": results}
    with atomic_output(output_dir / "benchmark.json") as handle:
        json.dump(report, handle, indent=2)
    if plot:
        plot_benchmark(report, output_dir / "benchmark.png")
    return report


def case_name(result: dict) -> str:
    """``label (backend[, N featurize workers])`` of a case or its result."""
    workers = result.get("featurize_workers", 0)
    return f"{result['label']} ({result['backend']}{f', {workers} featurize workers' if workers else ''})"


def format_case(result: dict) -> str:
    """One line per case: latency with featurisation, best throughput, memory and size."""
    if "error" in result:
        return f"{case_name(result)}: not run: {result['error']}"
    latency = result["latency"]["with_featurization"]
    best_size, best = max(result["throughput_mol_per_s"].items(), key=lambda item: item[1])
    return (f"{case_name(result)}: single molecule p50 {latency['p50_ms']:.2f} ms, "
            f"p95 {latency['p95_ms']:.2f} ms (model only p50 {result['latency']['model_only']['p50_ms']:.2f} ms); "
            f"{best:,.0f} mol/s at batch {best_size}; peak RSS {result['peak_rss_mb']:.0f} MB; "
            f"file {result['model_file_mb']:.1f} MB, {result['parameters'] / 1e6:.1f} M parameters")


def plot_benchmark(report: dict, path: str | os.PathLike) -> Path:
    """Draw single-molecule latency (p50 with p95 whiskers) and throughput per batch size to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [result for result in report["results"] if "error" not in result]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [case_name(result).replace(" (", "\n(") for result in results]
    p50 = [result["latency"]["with_featurization"]["p50_ms"] for result in results]
    p95 = [result["latency"]["with_featurization"]["p95_ms"] for result in results]
    model_only = [result["latency"]["model_only"]["p50_ms"] for result in results]
    positions = np.arange(len(results))
    left.bar(positions - 0.2, p50, 0.4, yerr=[np.zeros(len(p50)), np.subtract(p95, p50)], capsize=3,
             label="with featurisation (p50, whisker p95)")
    left.bar(positions + 0.2, model_only, 0.4, label="model only (p50)")
    left.set_xticks(positions, labels, fontsize=8)
    left.set_ylabel("ms per molecule, one at a time")
    left.legend(fontsize=8)
    for result, label in zip(results, labels):
        sizes = [int(size) for size in result["throughput_mol_per_s"]]
        right.plot(sizes, list(result["throughput_mol_per_s"].values()), marker="o", label=label.replace("\n", " "))
    right.set_xscale("log", base=2)
    right.set_xticks(report["settings"]["batch_sizes"], [str(size) for size in report["settings"]["batch_sizes"]])
    right.set_xlabel("batch size")
    right.set_ylabel("molecules per second (featurisation included)")
    right.legend(fontsize=8)
    machine = report["machine"]
    figure.suptitle(f"{machine['cpu']}, threads: {report['settings']['threads']}", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return path
