"""A self-contained HTML report of a library search: per query, its best hits with structures and mirror plots.

:func:`write_report` takes a :class:`~matchms_neims.search.SearchResult` and the query and library spectra the
search was run on. A :class:`~matchms_neims.search.SearchResult` keeps the identity of every hit but not its
peaks, so the report reads back only the records it shows: from a file it streams the records again (in the
same order and with the same unreadable records skipped as the search) and keeps those whose positions the
hits name, stopping after the last one needed; from a list it takes them by position. Each record read back
is checked against the hit's name, InChIKey and spectrum_id, so that a file changed after the search is
reported instead of pictured wrongly. Search results and scores are never changed.

The HTML has no external resources: the mirror plots are inline PNGs and the structures inline SVGs
(``data:`` URIs), the style sheet sits in the page, and every metadata string is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from matchms import Spectrum

from matchms_neims import __version__
from matchms_neims.io import SpectrumRecord, as_record, iter_records
from matchms_neims.plotting import ellipsized
from matchms_neims.utils import atomic_output

logger = logging.getLogger(__name__)

#: Hits per query drawn with a structure and a mirror plot; the other hits are listed as table rows.
DEFAULT_PICTURED_HITS = 3
#: Queries shown in a report by default (a bound on its size: about 100 kB per query with 3 pictured hits).
DEFAULT_REPORT_QUERIES = 100
#: Characters of a SMILES shown before it is cut with an ellipsis.
SMILES_SHOWN = 120

ReportSpectra = str | os.PathLike | Sequence[Spectrum | SpectrumRecord]

_STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; color: #1e293b; margin: 0;
       background: #f1f5f9; font-size: 14px; }
header { background: #1e293b; color: #f8fafc; padding: 14px 24px; }
header h1 { margin: 0 0 4px 0; font-size: 20px; }
header p { margin: 2px 0; color: #cbd5e1; font-size: 13px; }
main { padding: 12px 24px 32px 24px; max-width: 1150px; }
section.query { background: #ffffff; border: 1px solid #cbd5e1; border-radius: 6px; margin: 16px 0;
                padding: 12px 16px; }
section.query h2 { margin: 0 0 6px 0; font-size: 17px; }
.query-head { display: flex; gap: 16px; align-items: flex-start; }
.query-head img { border: 1px solid #e2e8f0; border-radius: 4px; background: #fff; }
.meta { color: #475569; font-size: 12px; margin: 1px 0; overflow-wrap: anywhere; }
.meta b { color: #1e293b; font-weight: 600; }
.hit { display: grid; grid-template-columns: 290px minmax(0, 1fr); gap: 14px; border-top: 1px solid #e2e8f0;
       padding: 10px 0; }
.hit-info h3 { margin: 0 0 4px 0; font-size: 15px; overflow-wrap: anywhere; }
.hit-info img { display: block; margin-top: 6px; border: 1px solid #e2e8f0; border-radius: 4px; background: #fff; }
.plot img { width: 100%; max-width: 792px; height: auto; display: block; }
.score { font-size: 22px; font-weight: 700; color: #0f172a; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 10px; font-size: 11.5px; font-weight: 600;
         margin: 2px 4px 2px 0; }
.predicted { background: #ede9fe; color: #5b21b6; }
.experimental { background: #dcfce7; color: #166534; }
.same { background: #fef3c7; color: #92400e; }
table.more { border-collapse: collapse; width: 100%; margin-top: 6px; font-size: 12.5px; }
table.more th, table.more td { text-align: left; padding: 3px 8px; border-top: 1px solid #e2e8f0;
                               white-space: nowrap; vertical-align: top; }
table.more td.text { white-space: normal; overflow-wrap: anywhere; }
table.more th { color: #475569; font-weight: 600; }
.none { color: #64748b; font-style: italic; }
footer { color: #64748b; font-size: 12px; padding: 0 24px 24px 24px; }
"""


def _e(value) -> str:
    """``value`` as HTML-escaped text (``""`` for ``None``)."""
    return html.escape("" if value is None else str(value), quote=True)


def _data_uri(content: bytes | str, mime: str) -> str:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def is_predicted(metadata: dict) -> bool:
    """Whether a record is an in-silico spectrum: metadata ``predicted`` true (``True``, ``"true"``, ``"1"``)."""
    value = metadata.get("predicted")
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value is not None else False


def _origin(metadata: dict) -> str:
    """The badge saying whether a record is predicted (and by which model) or experimental."""
    if not is_predicted(metadata):
        return '<span class="badge experimental">experimental</span>'
    model = " ".join(str(metadata[key]) for key in ("model_name", "model_version") if metadata.get(key))
    return f'<span class="badge predicted">predicted{" (" + _e(model) + ")" if model else ""}</span>'


def _source_name(source: ReportSpectra) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else f"a list of {len(source)} spectra"


def _as_record(item: Spectrum | SpectrumRecord, role: str, index: int) -> SpectrumRecord:
    try:
        return as_record(item)
    except TypeError as error:
        raise TypeError(f"{role} record {index}: {error}") from None


def fetch_records(source: ReportSpectra, indices: Iterable[int], role: str = "library") -> dict[int, SpectrumRecord]:
    """The records at the given positions of a spectrum file or list, as the search numbered them.

    Parameters
    ----------
    source
        An MSP/MGF file (streamed again; unreadable records are skipped, as in the search, without being
        logged a second time, and reading stops after the last position needed) or a sequence of
        :class:`matchms.Spectrum` / :class:`~matchms_neims.io.SpectrumRecord`.
    indices
        Positions (``Hit.library_index``, or a query's position).
    role
        ``"library"`` or ``"query"``, for messages.

    Returns
    -------
    dict
        Position -> record.

    Raises
    ------
    ValueError
        When a position is beyond the records the source holds.
    TypeError
        When ``source`` is neither a path nor a sequence (a :class:`~matchms_neims.search.SpectralMatrix` keeps
        no peaks, and a generator cannot be read again).
    """
    wanted = sorted({int(index) for index in indices})
    if not wanted:
        return {}
    found: dict[int, SpectrumRecord] = {}
    if isinstance(source, str | os.PathLike):
        io_logger = logging.getLogger("matchms_neims.io")
        previous = io_logger.level
        io_logger.setLevel(logging.ERROR)  # the search already reported the unreadable records
        count = 0
        try:
            targets = set(wanted)
            for position, record in enumerate(iter_records(source, problems=[])):
                count = position + 1
                if position in targets:
                    found[position] = record
                    if position == wanted[-1]:
                        break
        finally:
            io_logger.setLevel(previous)
    elif isinstance(source, Sequence) and not isinstance(source, str | bytes):
        count = len(source)
        for position in wanted:
            if 0 <= position < count:
                found[position] = _as_record(source[position], role, position)
    else:
        raise TypeError(f"the report needs the {role} spectra as a file path or a list of spectra (it reads the "
                        f"peaks of the records it shows again), got {type(source).__name__}")
    missing = [index for index in wanted if index not in found]
    if missing:
        raise ValueError(f"{role} record {missing[0]} is named by the search result but {_source_name(source)} "
                         f"holds only {count} readable records; was it changed after the search?")
    return found


def find_record(path: str | os.PathLike, selector: str, role: str = "library") -> tuple[int, SpectrumRecord]:
    """The first record of a spectrum file that a selector names, and its position.

    Parameters
    ----------
    path
        MSP or MGF file (unreadable records are skipped and not counted, as in the search).
    selector
        ``"id:X"``: spectrum_id (MSP ``DB#``) X; ``"name:X"``: compound name X (case-insensitive);
        ``"index:N"``: the record at position N (from 0, the search's ``library_index``); a bare value is tried
        as spectrum_id, then as name, then (if it is an integer) as position.
    role
        ``"query"`` or ``"library"``, for messages.

    Returns
    -------
    tuple
        ``(position, record)``.

    Raises
    ------
    ValueError
        When no record matches (the message names the file, the selector and how many records it holds).
    """
    from matchms_neims.spectral_matrix import row_metadata

    text = str(selector).strip()
    kind, separator, value = text.partition(":")
    if separator and kind in ("id", "name", "index"):
        kinds, value = (kind,), value.strip()
    else:
        kinds, value = ("id", "name", "index"), text
    if not value:
        raise ValueError(f"{role} selector {selector!r} is empty")
    position = None
    if "index" in kinds:
        try:
            position = int(value)
        except ValueError:
            if kinds == ("index",):
                raise ValueError(f"{role} selector {selector!r}: index must be a whole number (from 0)") from None
        if position is not None and position < 0:
            raise ValueError(f"{role} selector {selector!r}: index must be 0 or more")
    by_name = by_index = None
    count = 0
    for count, record in enumerate(iter_records(path), start=1):
        index = count - 1
        meta = row_metadata(record.metadata)
        if "id" in kinds and meta["spectrum_id"] and meta["spectrum_id"] == value:
            return index, record
        if "name" in kinds and by_name is None and meta["name"].casefold() == value.casefold():
            if kinds == ("name",):
                return index, record
            by_name = (index, record)
        if position is not None and index == position:
            if kinds == ("index",):
                return index, record
            by_index = (index, record)
    found = by_name or by_index
    if found is None:
        what = {"id": "spectrum_id", "name": "compound name", "index": "position"}
        wanted = " or ".join(what[kind] for kind in kinds if kind != "index" or position is not None)
        raise ValueError(f"{role} file {path}: no record has {wanted} {value!r} ({count} readable records)")
    return found


def _check_identity(record: SpectrumRecord, expected: dict, role: str, index: int, source: ReportSpectra) -> None:
    """Refuse a record read back whose name, InChIKey or spectrum_id differs from what the search reported."""
    from matchms_neims.spectral_matrix import row_metadata

    found = row_metadata(record.metadata)
    for key in ("name", "inchikey", "spectrum_id"):
        if key in expected and found[key] != expected[key]:
            raise ValueError(f"{role} record {index} of {_source_name(source)} has {key} {found[key]!r} but the search "
                             f"result says {expected[key]!r}; was the file changed after the search?")


def _structure_img(smiles: str, width: int, height: int, alt: str) -> str:
    from matchms_neims.plotting import structure_svg

    uri = _data_uri(structure_svg(smiles, width, height), "image/svg+xml")
    return f'<img src="{uri}" width="{width}" height="{height}" alt="{_e(alt)}">'


def _meta_line(label: str, value) -> str:
    return f'<p class="meta"><b>{_e(label)}</b> {_e(value)}</p>' if value not in (None, "") else ""


def _same_molecule(query: dict, hit) -> bool:
    from matchms_neims.chemistry import inchikey_block

    block = inchikey_block(query.get("inchikey"))
    return bool(block) and block == inchikey_block(hit.inchikey)


def _hit_card(hit, record: SpectrumRecord, query_record: SpectrumRecord, query: dict, max_mz: int) -> str:
    from matchms_neims.plotting import mirror_plot

    png = mirror_plot(query_record, record, query_label=query.get("name") or "query",
                      hit_label=hit.name or hit.spectrum_id or f"library record {hit.library_index}",
                      score=hit.score, max_mz=max_mz)
    same = '<span class="badge same">same molecule as query</span>' if _same_molecule(query, hit) else ""
    name = hit.name or hit.inchikey or f"library record {hit.library_index}"
    return (
        '<div class="hit"><div class="hit-info">'
        f'<h3>#{hit.rank} {_e(name)}</h3>'
        f'<div><span class="score">{hit.score:.3f}</span> cosine &middot; {hit.matched_peaks} matched peaks</div>'
        f"<div>{_origin(record.metadata)}{same}</div>"
        + _meta_line("Formula", _formula(record.metadata))
        + _meta_line("InChIKey", hit.inchikey)
        + _meta_line("ID", hit.spectrum_id)
        + _meta_line("SMILES", ellipsized(hit.smiles, SMILES_SHOWN))
        + _structure_img(hit.smiles, 260, 190, f"structure of {name}")
        + '</div><div class="plot">'
        f'<img src="{_data_uri(png, "image/png")}" alt="{_e("mirror plot: query vs " + name)}">'
        "</div></div>"
    )


def _hit_rows(hits, records: dict[int, SpectrumRecord], query: dict) -> str:
    rows = []
    for hit in hits:
        same = ' <span class="badge same">same molecule</span>' if _same_molecule(query, hit) else ""
        rows.append(
            f"<tr><td>{hit.rank}</td><td>{hit.score:.3f}</td><td>{hit.matched_peaks}</td>"
            f'<td class="text">{_e(hit.name)}{same}</td><td>{_e(hit.inchikey)}</td>'
            f'<td>{_origin(records[hit.library_index].metadata)}</td><td class="text">{_e(hit.spectrum_id)}</td></tr>'
        )
    return ('<table class="more"><tr><th>rank</th><th>score</th><th>matched peaks</th><th>name</th>'
            "<th>InChIKey</th><th>origin</th><th>ID</th></tr>" + "".join(rows) + "</table>")


def _formula(metadata: dict) -> str:
    """``formula`` and nominal mass of a record, e.g. ``C6H4Cl2O, MW 162`` (``""`` when neither is known)."""
    formula = str(metadata.get("formula") or "").strip()
    mass = metadata.get("nominal_mass")
    try:
        mass_text = f"MW {float(mass):.0f}" if mass not in (None, "") else ""
    except (TypeError, ValueError):
        mass_text = ""
    return ", ".join(part for part in (formula, mass_text) if part)


def _summary_table(result, shown: range) -> str:
    """One row per query shown: its best hit and, where the query's InChIKey is known, the rank of its molecule."""
    with_keys = any(result.queries[index].get("inchikey") for index in shown if index < len(result.queries))
    head = "<tr><th>query</th><th>best hit</th><th>score</th><th>matched peaks</th>"
    head += "<th>rank of the query's molecule</th></tr>" if with_keys else "</tr>"
    rows = []
    for index in shown:
        query = result.queries[index] if index < len(result.queries) else {}
        hits = result.hits[index]
        name = query.get("name") or query.get("spectrum_id") or f"query {index}"
        cells = [f'<td class="text"><a href="#query-{index}">{index + 1}. {_e(name)}</a></td>']
        if hits:
            best = hits[0]
            cells += [f'<td class="text">{_e(best.name or best.inchikey or best.spectrum_id)}</td>',
                      f"<td>{best.score:.3f}</td>", f"<td>{best.matched_peaks}</td>"]
        else:
            cells += ['<td class="none">no hits</td>', "<td></td>", "<td></td>"]
        if with_keys:
            ranks = [hit.rank for hit in hits if _same_molecule(query, hit)]
            known = bool(query.get("inchikey"))
            cells.append(f"<td>{ranks[0] if ranks else ('not in the hits' if known else '')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<section class="query"><h2>Summary</h2><table class="more">' + head + "".join(rows)
            + "</table></section>")


def _query_section(index: int, query: dict, query_record: SpectrumRecord, hits, records: dict[int, SpectrumRecord],
                   pictured_hits: int, max_mz: int) -> str:
    name = query.get("name") or query.get("spectrum_id") or f"query {index}"
    structure = _structure_img(query["smiles"], 180, 130, f"structure of {name}") if query.get("smiles") else ""
    parts = [
        f'<section class="query" id="query-{index}"><div class="query-head">{structure}<div>',
        f"<h2>Query {index + 1}: {_e(name)}</h2>",
        _meta_line("ID", query.get("spectrum_id")),
        _meta_line("Formula", _formula(query_record.metadata)),
        _meta_line("InChIKey", query.get("inchikey")),
        _meta_line("SMILES", ellipsized(query.get("smiles", ""), SMILES_SHOWN)),
        f'<p class="meta"><b>peaks</b> {len(query_record.mz)}</p>',
        "</div></div>",
    ]
    if not hits:
        parts.append('<p class="none">no hits</p>')
    for hit in hits[:pictured_hits]:
        parts.append(_hit_card(hit, records[hit.library_index], query_record, query, max_mz))
    if hits[pictured_hits:]:
        parts.append(_hit_rows(hits[pictured_hits:], records, query))
    parts.append("</section>")
    return "\n".join(parts)


def write_report(
    result,
    queries: ReportSpectra,
    library: ReportSpectra,
    path: str | os.PathLike,
    *,
    pictured_hits: int = DEFAULT_PICTURED_HITS,
    max_queries: int | None = DEFAULT_REPORT_QUERIES,
    max_mz: int | None = None,
    title: str = "matchms-neims search report",
    settings: dict | None = None,
) -> Path:
    """Write a self-contained HTML report of a search: per query its hits, structures and mirror plots.

    For each query shown: its name, ID, InChIKey (and structure when it has a SMILES); then its hits in rank
    order with score, matched peaks, name, InChIKey, ID and whether the library record is predicted
    (metadata ``predicted`` true) or experimental. The first ``pictured_hits`` hits also get an RDKit
    depiction and a mirror plot of the query against the hit (:func:`matchms_neims.plotting.mirror_plot`);
    the others are table rows. The file is written atomically.

    Parameters
    ----------
    result
        The :class:`~matchms_neims.search.SearchResult`.
    queries, library
        The query and library spectra the search was run on: MSP/MGF paths or sequences of
        :class:`matchms.Spectrum` / :class:`~matchms_neims.io.SpectrumRecord` (see :func:`fetch_records`).
    path
        HTML file to write.
    pictured_hits
        Hits per query with a structure and a mirror plot (default 3); 0 for none.
    max_queries
        Queries shown (the first ones; default 100, bounding the report at about 10 MB); ``None`` for all.
    max_mz
        Highest m/z of the mirror plots: give the search's ``max_mz`` (default that of
        :func:`~matchms_neims.search.search_library`).
    title
        Page title.
    settings
        Extra ``name -> value`` lines for the page header (the search's options, the files' names).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        When a hit's or query's record cannot be read back or differs from what the search reported.
    """
    from matchms_neims.spectral_matrix import SEARCH_MAX_MZ

    if pictured_hits < 0:
        raise ValueError(f"pictured_hits must be 0 or more, got {pictured_hits}")
    if max_queries is not None and max_queries < 0:
        raise ValueError(f"max_queries must be 0 or more (or None for all), got {max_queries}")
    max_mz = SEARCH_MAX_MZ if max_mz is None else int(max_mz)
    started = time.perf_counter()
    n_total = len(result.hits)
    n_shown = n_total if max_queries is None else min(max_queries, n_total)
    shown = range(n_shown)
    query_records = fetch_records(queries, shown, "query")
    hit_indices = {hit.library_index for index in shown for hit in result.hits[index]}
    library_records = fetch_records(library, hit_indices, "library")
    for index in shown:
        if index < len(result.queries):
            _check_identity(query_records[index], result.queries[index], "query", index, queries)
        for hit in result.hits[index]:
            _check_identity(library_records[hit.library_index], {"name": hit.name, "inchikey": hit.inchikey,
                                                                 "spectrum_id": hit.spectrum_id},
                            "library", hit.library_index, library)

    header_lines = [f"{result.n_queries} queries searched against {result.n_library} library spectra"
                    + (f"; the first {n_shown} are shown" if n_shown < n_total else "")]
    if settings:
        header_lines.append(" \u00b7 ".join(f"{name}: {value}" for name, value in settings.items()))
    header_lines.append(f"written by matchms-neims {__version__} on {time.strftime('%Y-%m-%d %H:%M')}")
    path = Path(path)
    n_plots = 0
    with atomic_output(path) as handle:
        handle.write("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n")
        handle.write(f"<header><h1>{_e(title)}</h1>"
                     + "".join(f"<p>{_e(line)}</p>" for line in header_lines) + "</header>\n<main>\n")
        if n_shown == 0:
            handle.write('<p class="none">no queries</p>\n')
        else:
            handle.write(_summary_table(result, shown) + "\n")
        for index in shown:
            query = result.queries[index] if index < len(result.queries) else {}
            hits = result.hits[index]
            handle.write(_query_section(index, query, query_records[index], hits, library_records,
                                        pictured_hits, max_mz) + "\n")
            n_plots += min(len(hits), pictured_hits)
        handle.write("</main>\n<footer>Mirror plots: query up, hit down, binned to unit resolution as the search "
                     "bins them; peaks at an m/z present in both spectra are coloured. Scores are the search's "
                     "weighted cosine.</footer>\n</body></html>\n")
    logger.info("report of %d queries (%d mirror plots) written to %s in %.1f s", n_shown, n_plots, path,
                time.perf_counter() - started)
    return path
