"""User metrics by file and by module path: the value is the user's function's, checked to be a
number, and each mistake is one MetricError line naming the metric."""

from __future__ import annotations

import hashlib

import pytest

from harness.metrics import MetricError, build_metric

SOURCE = "def hit(prediction, references):\n    return any(r in prediction for r in references)\n"


def test_a_module_path_metric_is_the_users_function(tmp_path, monkeypatch):
    (tmp_path / "scoring_for_test.py").write_text(SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    metric = build_metric("scoring_for_test:hit")
    assert metric.label == "scoring_for_test:hit"
    assert metric.per_sample("답은 서울", ["서울"]) == 1.0 and metric.per_sample("", ["서울"]) == 0.0
    assert metric.version.endswith("sha256 " + hashlib.sha256(SOURCE.encode()).hexdigest())
    assert not build_metric("scoring_for_test:hit", {"higher_is_better": False}).higher_is_better


@pytest.mark.parametrize(
    ("source", "spec", "expected"),
    [
        ("def f(p):\n    return 1\n", "m.py:f", "must take (prediction, references)"),
        ("def f(p, r):\n    return 'yes'\n", "m.py:f", "returned 'yes'; return a finite number"),
        ("def f(p, r):\n    return float('nan')\n", "m.py:f", "returned nan"),
        ("import no_such_module_here\n", "m.py:f", "importing m.py failed: ModuleNotFoundError"),
        ("f = 3\n", "m.py:f", "defines no function 'f'"),
        ("", "m.py:", "write FILE.py:FUNCTION"),
        ("", "no_such_package_x:f", "importing module no_such_package_x failed"),
    ],
)
def test_user_metric_mistakes_are_one_line(tmp_path, monkeypatch, source, spec, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(source, encoding="utf-8")
    with pytest.raises(MetricError) as info:
        build_metric(spec).per_sample("답", ["답"])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_options_other_than_direction_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.py").write_text(SOURCE, encoding="utf-8")
    with pytest.raises(MetricError, match="unknown option\\(s\\) tokenizer; allowed: higher_is_better"):
        build_metric("m.py:hit", {"tokenizer": "mecab"})
