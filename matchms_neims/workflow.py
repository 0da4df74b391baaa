"""Run a matchms workflow YAML that names the plugin's filters and similarity (``matchms-neims pipeline``).

matchms has no plugin discovery (matchms#626): a workflow that names ``add_predicted_spectrum`` or ``neimscosine``
only loads in a process that has imported :mod:`matchms_neims`. :func:`run_workflow` is that process. It

- reads MSP/MGF files with the plugin's readers (NAME anywhere in a record, ``Synon:`` keys, unreadable records
  listed, not lost) and other formats with matchms's importers;
- pins the model of every ``add_predicted_spectrum`` step to a file and its sha256 (the bundled model where the
  step names none), checks a sha256 the workflow already gives, and writes the workflow so resolved beside the
  hits, so that the run records which model made its spectra;
- collapses matchms's "No precursor_mz found" warning, logged once per EI spectrum, into one count;
- writes the top hits per query of the last score computation as a TSV.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from matchms import Pipeline
from matchms.importing.load_spectra import load_spectra as matchms_load_spectra

from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

#: Metadata key of a spectrum's position among the pipeline's input spectra (all files in order), set on import so
#: that hits name the input spectrum even after filters have dropped others.
INPUT_INDEX_KEY = "neims_input_index"
HITS_COLUMNS = ("query_index", "query_name", "query_id", "rank", "score", "matches", "reference_index",
                "reference_name", "reference_inchikey", "reference_id", "reference_predicted")


class PrecursorWarningCounter(logging.Filter):
    """Drop matchms's per-spectrum "No precursor_mz found in metadata." warnings, counting them.

    EI spectra never have a precursor m/z, so for this package the warning is noise, one line per spectrum.
    """

    MESSAGE = "No precursor_mz found in metadata."

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == self.MESSAGE:
            self.count += 1
            return False
        return True


def resolve_models(workflow: OrderedDict) -> list[dict]:
    """Pin every ``add_predicted_spectrum`` step of ``workflow`` (changed in place) to a model path and sha256.

    A step without a predictor keeps ``None`` (the bundled model) and gets its digest; a step with a
    ``model_sha256`` must name the digest of its model file.
    Returns one ``{"filters": ..., "path": ..., "sha256": ...}`` per step.
    """
    from matchms_neims.checkpoint import bundled_model_path
    from matchms_neims.filters import predicted_spectrum_step

    models = []
    for part in ("query_filters", "reference_filters"):
        steps = workflow.get(part) or []
        for position, step in enumerate(steps):
            name, params = (step, {}) if isinstance(step, str) else (step[0], dict(step[1]) if len(step) > 1 else {})
            if getattr(name, "__name__", name) != "add_predicted_spectrum":
                continue
            predictor = params.get("predictor")
            if predictor is not None and not isinstance(predictor, (str, os.PathLike)):
                raise ValueError(f"{part} step {position + 1}: add_predicted_spectrum's predictor must be a model "
                                 f"file path or null in a workflow file, got {type(predictor).__name__}")
            pinned = predicted_spectrum_step(predictor)[1]
            path = pinned["predictor"] or str(bundled_model_path())
            if params.get("model_sha256") is not None and str(params["model_sha256"]) != pinned["model_sha256"]:
                raise ValueError(f"{part} step {position + 1}: the model file {path} has sha256 "
                                 f"{pinned['model_sha256']}, but the workflow names {params['model_sha256']}")
            params.update(predictor=pinned["predictor"], model_sha256=pinned["model_sha256"])
            steps[position] = ["add_predicted_spectrum", params]
            models.append({"filters": part, "path": path, "sha256": pinned["model_sha256"]})
    return models


def load_spectra_file(path: str | os.PathLike, problems: list | None = None) -> list:
    """Spectra of one file: MSP/MGF through the plugin's reader (problems appended to ``problems``), other
    formats through matchms."""
    from matchms_neims.io import SpectrumFileError, detect_format, iter_records

    try:
        detect_format(path)  # .msp / .mgf, optionally .gz
    except SpectrumFileError:
        return list(matchms_load_spectra(str(path)))
    return [record.to_spectrum() for record in iter_records(path, problems)]


class NeimsPipeline(Pipeline):
    """A matchms :class:`~matchms.Pipeline` that reads MSP/MGF files with the plugin's readers and logs through
    the caller's logging set-up (matchms's ``set_logging`` adds a handler of its own, so every matchms warning
    would print twice)."""

    def set_logging(self) -> None:
        logging.getLogger("matchms").setLevel(self.logging_level)

    def __init__(self, workflow: OrderedDict, progress_bar: bool = True, logging_level: str = "WARNING",
                 logging_file: str | None = None):
        super().__init__(workflow, progress_bar=progress_bar, logging_level=logging_level, logging_file=logging_file)
        self.problems: list = []

    def import_spectra(self, query_files, reference_files=None) -> None:
        def read(files) -> list:
            files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
            spectra = [spectrum for path in files for spectrum in load_spectra_file(path, self.problems)]
            for position, spectrum in enumerate(spectra):
                spectrum.set(INPUT_INDEX_KEY, position)
            return spectra

        self._spectra_queries = read(query_files)
        if reference_files is None:
            self.is_symmetric = True
            self._spectra_references = self._spectra_queries
        else:
            self._spectra_references = read(reference_files)


def top_hits(scores, top_k: int = 10) -> list[dict]:
    """The ``top_k`` references of each query by the last score computed (matchms ``Scores``), best first.

    ``query_index`` and ``reference_index`` are positions among the input spectra (:data:`INPUT_INDEX_KEY`, set
    by :class:`NeimsPipeline`), not among those the filters kept; spectra without the key give their position in
    ``scores``."""
    names = list(scores.score_names)
    score_name = next((name for name in reversed(names) if name.endswith("_score")), names[-1])
    matches_name = score_name[: -len("_score")] + "_matches" if score_name.endswith("_score") else None
    sparse = scores.scores
    rows, cols = np.asarray(sparse.row), np.asarray(sparse.col)
    values = np.asarray(sparse.data[score_name], dtype=np.float64)
    matches = np.asarray(sparse.data[matches_name]) if matches_name in names else None
    hits = []
    def input_index(spectrum, position: int) -> int:
        value = spectrum.get(INPUT_INDEX_KEY)
        return position if value is None else int(value)

    for query_position, query in enumerate(scores.queries):
        query_index = input_index(query, query_position)
        mine = np.flatnonzero(cols == query_position)
        order = mine[np.lexsort((rows[mine], -values[mine]))][:top_k]
        for rank, entry in enumerate(order, start=1):
            reference = scores.references[rows[entry]]
            hits.append({
                "query_index": query_index, "query_name": query.get("compound_name") or "",
                "query_id": query.get("spectrum_id") or "", "rank": rank, "score": float(values[entry]),
                "matches": "" if matches is None else int(matches[entry]),
                "reference_index": input_index(reference, int(rows[entry])),
                "reference_name": reference.get("compound_name") or "",
                "reference_inchikey": reference.get("inchikey") or "",
                "reference_id": reference.get("spectrum_id") or "",
                "reference_predicted": bool(reference.get("predicted")),
            })
    return hits


def write_hits(hits: list[dict], path: str | os.PathLike) -> Path:
    """Write :func:`top_hits` as a TSV (scores with 6 decimals), atomically."""
    from matchms_neims.io import one_line_text

    path = Path(path)
    with atomic_output(path) as handle:
        handle.write("\t".join(HITS_COLUMNS) + "\n")
        for hit in hits:
            values = [f"{hit[key]:.6f}" if key == "score" else one_line_text(hit[key]) for key in HITS_COLUMNS]
            handle.write("\t".join(values) + "\n")
    return path


def resolved_workflow_path(output: str | os.PathLike) -> Path:
    """Where :func:`run_workflow` writes the workflow it ran: ``OUT.workflow.yaml`` beside the hits ``OUT``."""
    output = Path(output)
    return output.with_name(output.name + ".workflow.yaml")


def run_workflow(workflow_file: str | os.PathLike, queries, references=None, output: str | os.PathLike = "hits.tsv",
                 top_k: int = 10, scores_json: str | os.PathLike | None = None, progress_bar: bool = True) -> dict:
    """Run a matchms workflow YAML with the plugin loaded; write the top hits (and optionally all scores).

    Parameters
    ----------
    workflow_file
        A workflow written by ``matchms.Pipeline.create_workflow`` (filters and similarities of matchms and of
        this plugin, e.g. ``add_predicted_spectrum``, ``neimscosine``).
    queries, references
        Spectrum files (or lists of files); without references the queries are scored against each other.
    output
        Hits TSV (:data:`HITS_COLUMNS`); the resolved workflow goes to :func:`resolved_workflow_path`.
    top_k
        Hits per query.
    scores_json
        Also write every score as matchms's JSON (``Scores.to_json``).

    Returns
    -------
    dict
        ``n_queries``, ``n_references``, ``n_hits``, ``models`` (path and sha256 per prediction step),
        ``problems`` (unreadable records) and ``precursor_warnings`` (matchms warnings collapsed).
    """
    from matchms.yaml_file_functions import load_workflow_from_yaml_file, ordered_dump

    import matchms_neims.filters  # noqa: F401  (registers the plugin's filters and similarity with matchms)

    workflow = load_workflow_from_yaml_file(str(workflow_file))
    models = resolve_models(workflow)
    for model in models:
        logger.info("add_predicted_spectrum (%s): model %s, sha256 %s", model["filters"], model["path"],
                    model["sha256"])
    counter = PrecursorWarningCounter()
    matchms_logger = logging.getLogger("matchms")
    matchms_logger.addFilter(counter)
    try:
        # matchms's similarity loops draw bars that Pipeline's progress_bar does not reach: without bars, stderr
        # is sent to os.devnull meanwhile (log handlers keep the stream they were made with, so messages stay)
        with (open(os.devnull, "w") if not progress_bar else contextlib.nullcontext()) as sink, \
                (contextlib.redirect_stderr(sink) if sink is not None else contextlib.nullcontext()):
            pipeline = NeimsPipeline(workflow, progress_bar=progress_bar, logging_level="WARNING")
            pipeline.run(queries, references)
    finally:
        matchms_logger.removeFilter(counter)
    if pipeline.scores is None:
        raise ValueError(f"{workflow_file}: the workflow has no score_computations, so there is nothing to rank")
    hits = top_hits(pipeline.scores, top_k)
    with atomic_output(resolved_workflow_path(output)) as handle:
        handle.write(f"# the workflow {workflow_file} as matchms-neims pipeline ran it (models pinned by sha256)\n")
        ordered_dump(workflow, handle)
    write_hits(hits, output)
    if scores_json:
        import json

        from matchms.Scores import ScoresJSONEncoder

        with atomic_output(Path(scores_json)) as handle:
            json.dump(pipeline.scores, handle, cls=ScoresJSONEncoder)
    return {"n_queries": len(pipeline.spectra_queries), "n_references": len(pipeline.spectra_references),
            "n_hits": len(hits), "models": models, "problems": pipeline.problems,
            "precursor_warnings": counter.count}
