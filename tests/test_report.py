"""The visual report: mirror plots, structure depictions, the HTML report, its CLI and its rendering in Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from matchms_neims.cli import main
from matchms_neims.io import SpectrumRecord, iter_records, write_spectra
from matchms_neims.plotting import PNG_SIGNATURE, mirror_plot, structure_png, structure_svg, unit_peaks
from matchms_neims.report import fetch_records, find_record, is_predicted, write_report
from matchms_neims.search import search_library

HOSTILE_NAME = '<script>alert("x")</script> & co'
HOSTILE_QUERY = "<b>bold</b> unknown"


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_predictor, fixtures_dir):
    """Queries (3 MassBank records and one nameless-structure query with an HTML name) and a library of predicted
    spectra of their molecules plus experimental records, one with an HTML name, one with an unparsable SMILES
    and one without SMILES; all as MSP files."""
    root = tmp_path_factory.mktemp("report")
    massbank = list(iter_records(fixtures_dir / "massbank_mini.msp"))
    queries = massbank[:3]
    hostile = replace(massbank[3], metadata={**massbank[3].metadata, "compound_name": HOSTILE_QUERY})
    hostile.metadata.pop("smiles", None)
    hostile.metadata.pop("inchikey", None)
    queries_path = root / "queries.msp"
    write_spectra(queries + [hostile], queries_path)

    predicted = tiny_predictor.predict_spectra([(q.metadata["smiles"], q.metadata["compound_name"]) for q in queries])
    experimental = [replace(record, metadata=dict(record.metadata)) for record in massbank[:6]]
    experimental[1].metadata["compound_name"] = HOSTILE_NAME
    experimental[2].metadata["smiles"] = "not_a_smiles("
    experimental[4].metadata.pop("smiles", None)
    library_path = root / "library.msp"
    write_spectra(list(predicted) + experimental, library_path)
    result = search_library(queries_path, library_path, top_k=4)
    report = write_report(result, queries_path, library_path, root / "report.html", pictured_hits=2)
    return {"root": root, "queries": queries_path, "library": library_path, "result": result, "report": report}


def _images(text: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', text)


def _png_image(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def test_report_shows_hits_with_escaped_metadata(files):
    text = files["report"].read_text(encoding="utf-8")
    result = files["result"]
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    for query, hits in zip(result.queries[:3], result.hits):
        assert query["name"] in text and query["inchikey"] in text
        assert len(hits) == 4
        for hit in hits:
            assert f"{hit.score:.3f}" in text
            assert hit.inchikey in text
    first = result.hits[0][0]
    assert first.name == result.queries[0]["name"] and "same molecule as query" in text
    assert f"{first.matched_peaks} matched peaks" in text
    assert 'class="badge predicted">predicted' in text and 'class="badge experimental">experimental' in text
    # every metadata string is escaped: names of a library record and of a query
    assert "<script>" not in text and "<b>bold</b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in text
    assert "&lt;b&gt;bold&lt;/b&gt; unknown" in text


def test_report_is_self_contained_and_bounded(files):
    text = files["report"].read_text(encoding="utf-8")
    result = files["result"]
    assert not re.search(r'(src|href)="(?!data:|#)', text), "only inline images and in-page links"
    assert "http://" not in text.replace("http://www.w3.org", "").replace("http://www.rdkit.org", "")
    images = _images(text)
    plots = [uri for uri in images if uri.startswith("data:image/png;base64,")]
    structures = [uri for uri in images if uri.startswith("data:image/svg+xml;base64,")]
    assert len(plots) + len(structures) == len(images)
    n_queries = len(result.hits)
    assert len(plots) == 2 * n_queries  # pictured_hits=2, the other 2 hits per query are table rows
    assert len(structures) == 2 * n_queries + 3  # hits + the 3 queries with a SMILES
    assert text.count("<tr><td>3</td>") == n_queries and text.count("<tr><td>4</td>") == n_queries
    for uri in plots:
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    svgs = [base64.b64decode(uri.split(",", 1)[1]).decode() for uri in structures]
    assert all(svg.lstrip().startswith("<svg") for svg in svgs)


def test_missing_and_unparsable_smiles_get_placeholders():
    assert "SMILES missing" in structure_svg(None) and "SMILES missing" in structure_svg("  ")
    assert "unparsable SMILES" in structure_svg("not_a_smiles(")
    assert "&lt;" not in structure_svg("c1ccccc1O") and "<path" in structure_svg("c1ccccc1O")
    for smiles in ("c1ccccc1O", None, "C1CC"):
        png = structure_png(smiles, 200, 150)
        assert png.startswith(PNG_SIGNATURE) and _png_image(png).size == (200, 150)


def test_mirror_plot_is_a_png_and_matches_the_search(files, tmp_path):
    queries, library = list(iter_records(files["queries"])), list(iter_records(files["library"]))
    hit = files["result"].hits[1][1]
    png = mirror_plot(queries[1], library[hit.library_index], score=hit.score)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5_000
    image = np.asarray(_png_image(png).convert("RGB"), dtype=float)
    assert image.shape == (374, 792, 3) and image.std() > 10
    written = mirror_plot(queries[1], library[hit.library_index], tmp_path / "mirror.png", width=5, height=3, dpi=80)
    assert written == tmp_path / "mirror.png" and _png_image(written.read_bytes()).size == (400, 240)
    # the highlighted peaks are the search's matched peaks
    for query, hits in zip(queries, files["result"].hits):
        for hit in hits:
            shared = np.intersect1d(unit_peaks(query).mz, unit_peaks(library[hit.library_index]).mz)
            assert shared.size == hit.matched_peaks
    empty = SpectrumRecord({"compound_name": "empty"}, np.zeros(0), np.zeros(0))
    assert mirror_plot(empty, queries[0]).startswith(PNG_SIGNATURE)


def test_report_refuses_a_library_changed_after_the_search(files, tmp_path):
    records = list(iter_records(files["library"]))
    shuffled = tmp_path / "shuffled.msp"
    write_spectra(records[::-1], shuffled)
    with pytest.raises(ValueError, match=r"library record \d+ of .*shuffled.msp has name .*changed after the search"):
        write_report(files["result"], files["queries"], shuffled, tmp_path / "r.html")
    short = tmp_path / "short.msp"
    write_spectra(records[:1], short)
    with pytest.raises(ValueError, match="holds only 1 readable records"):
        fetch_records(short, [5])
    assert not (tmp_path / "r.html").exists()


def test_report_from_spectrum_lists_and_limits(files, tmp_path):
    queries = [record.to_spectrum() for record in iter_records(files["queries"])]
    library = [record.to_spectrum() for record in iter_records(files["library"])]
    result = search_library(queries, library, top_k=3)
    path = write_report(result, queries, library, tmp_path / "lists.html", pictured_hits=1, max_queries=2)
    text = path.read_text()
    assert "the first 2 are shown" in text and HOSTILE_QUERY not in text
    assert len([uri for uri in _images(text) if uri.startswith("data:image/png")]) == 2
    assert is_predicted({"predicted": "true"}) and is_predicted({"predicted": True})
    assert not is_predicted({"predicted": "false"}) and not is_predicted({})
    with pytest.raises(TypeError, match="file path or a list"):
        write_report(result, iter(queries), library, tmp_path / "x.html")


def test_find_record_selectors(files):
    index, record = find_record(files["library"], "name:" + HOSTILE_NAME.upper())
    assert record.metadata["compound_name"] == HOSTILE_NAME and index == 4
    first_id = list(iter_records(files["library"]))[3].metadata["spectrum_id"]
    assert find_record(files["library"], first_id)[0] == 3 and find_record(files["library"], "id:" + first_id)[0] == 3
    assert find_record(files["library"], "index:7")[0] == 7 and find_record(files["library"], "7")[0] == 7
    with pytest.raises(ValueError, match=r"no record has spectrum_id or compound name 'nothing' \(9 readable"):
        find_record(files["library"], "nothing")
    with pytest.raises(ValueError, match="index must be a whole number"):
        find_record(files["library"], "index:x")


def test_cli_search_report_and_plot(files, tmp_path, caplog):
    report, hits = tmp_path / "cli.html", tmp_path / "hits.tsv"
    assert main(["search", str(files["queries"]), str(files["library"]), "-o", str(hits), "--top-k", "3",
                 "--report", str(report), "--report-hits", "1"]) == 0
    text = report.read_text()
    assert len([uri for uri in _images(text) if uri.startswith("data:image/png")]) == 4
    assert "weighting: m/z^1" in text

    png = tmp_path / "mirror.png"
    name = files["result"].queries[0]["name"]
    assert main(["plot", str(files["queries"]), str(files["library"]), "--query", f"name:{name.lower()}",
                 "-o", str(png)]) == 0
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert main(["plot", str(files["queries"]), str(files["library"]), "--query", "index:1", "--hit", "index:4",
                 "-o", str(png)]) == 0
    assert main(["plot", str(files["queries"]), str(files["library"]), "--query", "no such query",
                 "-o", str(png)]) == 2
    assert "query file" in caplog.text and "'no such query'" in caplog.text
    assert main(["plot", str(files["queries"]), str(files["library"]), "--query", "0", "-o",
                 str(tmp_path / "x.svg")]) == 2
    assert main(["search", str(files["queries"]), str(files["library"]), "-o", str(hits), "--report",
                 str(hits)]) == 2


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run_chromium(binary: str, profile, *arguments: str) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(files, tmp_path):
    binary = _chromium()
    # a copy of the report that writes, once loaded, how many of its images the browser decoded
    probe = tmp_path / "probe.html"
    probe.write_text(files["report"].read_text().replace(
        "</body>", "<script>window.addEventListener('load', () => { const images = [...document.images]; "
                   "document.body.setAttribute('data-decoded', images.filter(i => i.naturalWidth > 0).length + "
                   "' of ' + images.length); });</script></body>"))
    dom = _run_chromium(binary, tmp_path / "profile-dom", "--virtual-time-budget=5000", "--dump-dom",
                        probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    n_images = len(_images(files["report"].read_text()))
    assert f'data-decoded="{n_images} of {n_images}"' in dom.stdout
    result = files["result"]
    for query in result.queries[:3]:
        assert query["name"] in dom.stdout
    assert "&lt;script&gt;alert" in dom.stdout and "<script>alert" not in dom.stdout

    screenshot = tmp_path / "screenshot.png"
    shot = _run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={screenshot}", "--window-size=1200,2000",
                         files["report"].as_uri())
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    image = np.asarray(_png_image(screenshot.read_bytes()).convert("RGB"), dtype=float)
    assert image.shape == (2000, 1200, 3)
    assert image.std() > 20, "the screenshot is blank"
    # the page's dark header, and the mirror plots' query-blue peaks (images decoded and drawn)
    assert np.abs(image[5, 5] - np.array([0x1E, 0x29, 0x3B])).max() < 10
    blue = np.all(np.abs(image - np.array([0x1F, 0x4E, 0x9C])) < 30, axis=2)
    assert blue.sum() > 200
