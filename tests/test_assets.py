"""Sanity checks for the small datasets shipped in harness/data/assets/.

These files power the offline demo, the tests and the tiny tokenizer, so a
broken offset or a malformed line would surface far away from its cause.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


def _assets_dir() -> Path:
    try:
        from importlib.resources import files

        p = Path(str(files("harness") / "assets"))
        if p.is_dir():
            return p
    except Exception:  # package not importable yet: fall back to the source tree
        pass
    return Path(__file__).resolve().parents[1] / "harness" / "data" / "assets"


ASSETS = _assets_dir()


def _hangul_ratio(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    hangul = sum(1 for c in letters if "\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e")
    return hangul / len(letters)


def _load_json(name: str) -> dict:
    with open(ASSETS / name, encoding="utf-8") as f:
        return json.load(f)


def _load_jsonl(name: str) -> list[dict]:
    rows = []
    with open(ASSETS / name, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rows.append(json.loads(line))
            else:
                pytest.fail(f"{name}: blank line {n}")
    return rows


def _iter_qas(squad: dict):
    for article in squad["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield para["context"], qa


def _check_squad(squad: dict) -> tuple[int, int]:
    assert isinstance(squad.get("version"), str) and squad["version"]
    assert isinstance(squad["data"], list) and squad["data"]
    ids: set[str] = set()
    n_paras = 0
    for article in squad["data"]:
        assert isinstance(article["title"], str) and article["title"].strip()
        assert article["paragraphs"]
        for para in article["paragraphs"]:
            n_paras += 1
            ctx = para["context"]
            assert isinstance(ctx, str) and ctx.strip()
            assert para["qas"]
            for qa in para["qas"]:
                assert qa["id"] not in ids, f"duplicate id {qa['id']}"
                ids.add(qa["id"])
                assert qa["question"].strip()
                assert qa["answers"], qa["id"]
                for ans in qa["answers"]:
                    text, start = ans["text"], ans["answer_start"]
                    assert isinstance(start, int) and start >= 0
                    assert text.strip() == text and text, qa["id"]
                    assert ctx[start : start + len(text)] == text, f"{qa['id']}: {text!r} not at offset {start}"
    return n_paras, len(ids)


def test_assets_dir_exists():
    assert ASSETS.is_dir(), ASSETS
    for name in (
        "korquad_sample.json",
        "squad_sample_en.json",
        "summarization_ko.jsonl",
        "dialogue_summarization_ko.jsonl",
        "perplexity_ko.jsonl",
        "tokenizer_corpus_extra.txt",
        "README.md",
    ):
        assert (ASSETS / name).is_file(), name


def test_korquad_sample():
    squad = _load_json("korquad_sample.json")
    n_paras, n_q = _check_squad(squad)
    assert n_paras >= 14
    assert n_q >= 60
    multi = sum(1 for _, qa in _iter_qas(squad) if len(qa["answers"]) > 1)
    assert multi >= 3
    for ctx, qa in _iter_qas(squad):
        assert _hangul_ratio(ctx) > 0.8
        assert _hangul_ratio(qa["question"]) > 0.8
        # answers are short spans, not sentences
        assert all(len(a["text"]) <= 30 for a in qa["answers"]), qa["id"]


def test_squad_sample_en():
    squad = _load_json("squad_sample_en.json")
    n_paras, n_q = _check_squad(squad)
    assert n_paras >= 5
    assert n_q >= 20
    for ctx, _ in _iter_qas(squad):
        assert ctx.isascii()


def test_summarization_ko():
    rows = _load_jsonl("summarization_ko.jsonl")
    assert len(rows) == 30
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert set(r) >= {"id", "document", "summary"}
        assert r["document"].strip() and r["summary"].strip()
        assert len(r["summary"]) < len(r["document"])
        assert _hangul_ratio(r["document"]) > 0.8
        assert _hangul_ratio(r["summary"]) > 0.8
        assert r["summary"].count("\n") <= 1
    assert sum("\n" in r["summary"] for r in rows) >= 3  # ROUGE-Lsum cases


def test_dialogue_summarization_ko():
    rows = _load_jsonl("dialogue_summarization_ko.jsonl")
    assert len(rows) == 69
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"dlg-\d{2}", i) for i in ids)
    speakers = []
    for r in rows:
        assert set(r) == {"id", "dialogue", "summary"}
        assert r["dialogue"].strip() and r["summary"].strip()
        assert len(r["summary"]) < len(r["dialogue"])
        turns = r["dialogue"].split("\n")
        assert 4 <= len(turns) <= 12, r["id"]
        assert all(re.match(r"[ABC]: \S", t) for t in turns), r["id"]
        speakers.append(len({t[0] for t in turns}))
        assert _hangul_ratio(r["dialogue"]) > 0.8
        assert _hangul_ratio(r["summary"]) > 0.8
        assert r["summary"].count("\n") <= 1
    assert set(speakers) == {2, 3}
    assert sum("\n" in r["summary"] for r in rows) >= 3  # ROUGE-Lsum cases


def test_perplexity_ko():
    rows = _load_jsonl("perplexity_ko.jsonl")
    assert len(rows) == 16
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert 300 <= len(r["text"]) <= 900, (r["id"], len(r["text"]))
        assert _hangul_ratio(r["text"]) > 0.8


def test_tokenizer_corpus_extra():
    text = (ASSETS / "tokenizer_corpus_extra.txt").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) >= 180
    ko = [ln for ln in lines if _hangul_ratio(ln) > 0.5]
    en = [ln for ln in lines if ln.isascii() and any(c.isalpha() for c in ln) and not ln.startswith(("###", "<"))]
    assert len(ko) >= 120
    assert len(en) >= 40
    for marker in (
        "### Instruction:",
        "### Response:",
        "### 질문:",
        "### 답변:",
        "### 문맥:",
        "<|user|>",
        "<|assistant|>",
    ):
        assert text.count(marker) >= 2, marker


def test_readme_mentions_license():
    readme = (ASSETS / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme
