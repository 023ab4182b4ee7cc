"""The report page in real headless Chromium (DevTools protocol over a pipe, no network):
untrusted payloads never run and show as literal text, the page renders, no console errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from chrome_cdp import Chrome, find_chromium, png_colors

from harness.report import load_report, render_html

pytestmark = pytest.mark.browser

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "</textarea>",
    "</script><script>window.__pwned=1</script>",
    "javascript:alert(1)",
]


@pytest.fixture(scope="module")
def chrome():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    browser = Chrome(CHROMIUM, 1400, 1000)
    yield browser
    browser.close()


@pytest.fixture
def xss_page(tmp_path, write_qa_run, make_samples) -> Path:
    samples, outputs = make_samples(60)  # more than one page of 50
    for i, p in enumerate(PAYLOADS):
        samples[i]["id"] = f"x{i}-{p}"
        samples[i]["prompt"] = f"### 문맥:\n맥락 {p}\n\n### 질문:\n질문 {p}\n\n### 답변:\n"
        samples[i]["references"] = [f"ref {p}"]
        outputs["base"][i] = f"base {p}"
        outputs["ko-qa"][i] = f"tuned {p}"
        outputs["ko-qa-v2"][i] = p
    run = write_qa_run(tmp_path / "runs", "korquad-sample-xss", samples, outputs)
    path = tmp_path / "xss.html"
    path.write_text(render_html(load_report([run])), encoding="utf-8")
    return path


def _rows_text(chrome) -> str:
    return chrome.eval("document.getElementById('rows').innerText")


def _assert_safe(chrome):
    assert chrome.eval("typeof window.__pwned") == "undefined"
    assert chrome.eval("document.querySelectorAll('#rows script, #rows img, #rows iframe, #rows a').length") == 0
    assert not [p for p in chrome.problems() if p.startswith("dialog")], chrome.problems()


@needs_chromium
def test_payloads_do_not_run_and_show_as_text(chrome, xss_page):
    chrome.events.clear()
    chrome.open(xss_page.as_uri())
    assert chrome.eval("document.body.getAttribute('data-rendered')") == "50"
    _assert_safe(chrome)
    # open every <details> so prompts are part of innerText too
    chrome.eval("document.querySelectorAll('#rows details').forEach(function (d) { d.open = true; }); true")
    text = _rows_text(chrome)
    for p in PAYLOADS:
        for shown in (f"ref {p}", f"base {p}", f"맥락 {p}", f"질문 {p}", f"x{PAYLOADS.index(p)}-{p}"):
            assert shown in text, shown
    # the adapter outputs are diffs against base: without the deleted parts they read as the payload
    for p in PAYLOADS:
        assert chrome.eval(
            "Array.from(document.querySelectorAll('.pred .text')).some(function (e) {"
            " var c = e.cloneNode(true); c.querySelectorAll('del').forEach(function (d) { d.remove(); });"
            f" return c.textContent === {json.dumps(p)}; }})"
        ), p
    # search through the UI control (input event), then the filter select (change event)
    chrome.eval("var q = document.getElementById('q'); q.value = 'onerror'; q.dispatchEvent(new Event('input')); true")
    chrome.eval("new Promise(function (r) { setTimeout(r, 400); })")
    assert chrome.eval("document.body.getAttribute('data-rendered')") == "1"
    assert PAYLOADS[1] in _rows_text(chrome)
    _assert_safe(chrome)
    chrome.eval(
        "var q = document.getElementById('q'); q.value = ''; q.dispatchEvent(new Event('input')); "
        "var f = document.getElementById('filter'); f.value = 'changed'; "
        "f.dispatchEvent(new Event('change')); true"
    )
    chrome.eval("new Promise(function (r) { setTimeout(r, 400); })")
    text = _rows_text(chrome)
    for p in PAYLOADS:
        assert f"base {p}" in text
    chrome.eval("document.getElementById('next').click(); true")
    _assert_safe(chrome)
    assert chrome.eval("document.getElementById('page').textContent").startswith("page 2")
    assert chrome.problems() == []


@needs_chromium
def test_screenshot_renders_without_console_errors(chrome, qa_run, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(render_html(load_report([qa_run])), encoding="utf-8")
    chrome.events.clear()
    chrome.open(page.as_uri())
    assert chrome.eval("document.body.getAttribute('data-rendered')") == "24"
    assert chrome.eval("document.querySelectorAll('svg polyline').length") == 4  # loss + eval_loss × 2 adapters
    out = Path(os.environ.get("HARNESS_SCREENSHOT_DIR", tmp_path)) / "report.png"
    data = chrome.screenshot(str(out), full_page=False)
    assert len(data) > 10_000
    assert png_colors(data) > 10, "the screenshot looks blank"
    assert chrome.problems() == []


@needs_chromium
def test_choice_samples_show_log_likelihoods_as_text(chrome, tmp_path):
    """A choice run's sample view: hostile choices and subjects stay text, each choice's
    log-likelihood per model with the gold and the picks, a NaN log-likelihood as "nan"."""
    import math
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "breakdown"))
    from choice_run import HOSTILE, HOSTILE_SUBJECT, write_choice_run

    from harness.runs.store import RunDir

    run = write_choice_run(tmp_path / "runs", n=12, hostile=True)
    store = RunDir(run)
    records = store.read_records("ko-mc")
    records[1]["loglikelihoods"][2] = math.nan
    store.records_file("ko-mc").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = tmp_path / "choice.html"
    page.write_text(render_html(load_report([run])), encoding="utf-8")
    chrome.events.clear()
    chrome.open(page.as_uri())
    assert chrome.eval("document.body.getAttribute('data-rendered')") == "12"
    _assert_safe(chrome)
    text = _rows_text(chrome)
    for p in HOSTILE:
        assert p.replace("\u0000", "") in text.replace("\u0000", ""), p
    assert chrome.eval("document.querySelectorAll('#rows table.choices').length") == 12
    assert chrome.eval("document.querySelectorAll('#rows tr.gold').length") == 12
    second = chrome.eval("document.querySelectorAll('#rows table.choices')[1].innerText")
    assert "nan" in second and "◀" in second
    assert HOSTILE_SUBJECT in chrome.eval("document.getElementById('subject-table').textContent")
    assert chrome.problems() == []
