"""KorQuAD 1.0 exact match and character F1 as a Hugging Face ``evaluate`` module.

Load it offline from its folder:
    evaluate.load("/abs/path/harness/metrics/evaluate_modules/korquad")
``evaluate`` copies this file into its cache before importing it, so it must
import the installed ``harness`` package with absolute imports only.
"""

import datasets
import evaluate

from harness.metrics.errors import MetricError
from harness.metrics.korquad import korquad_exact_match, korquad_f1

_DESCRIPTION = """\
KorQuAD 1.0 exact match and character-level F1 with the official
evaluate-v1.0.py normalisation, averaged over samples (0-100 scale).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted answer strings.
    references: list of lists of gold answer strings (max over golds per sample).
Returns:
    exact_match: mean exact match (0-100).
    f1: mean character-level F1 (0-100).
Example:
    >>> korquad = evaluate.load("harness/metrics/evaluate_modules/korquad")
    >>> korquad.compute(predictions=["세종대왕"], references=[["세종대왕", "세종"]])
    {'exact_match': 100.0, 'f1': 100.0}
"""

_CITATION = """\
@article{lim2019korquad1,
  title={KorQuAD1.0: Korean QA Dataset for Machine Reading Comprehension},
  author={Lim, Seungyoung and Kim, Myungji and Lee, Jooyoul},
  journal={arXiv preprint arXiv:1909.07005},
  year={2019}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Korquad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://korquad.github.io/KorQuad%201.0/"],
        )

    def _compute(self, predictions, references):
        n = len(predictions)
        if n == 0:
            raise MetricError("korquad: no predictions to score; pass at least one sample")
        em = sum(korquad_exact_match(p, list(r)) for p, r in zip(predictions, references))
        f1 = sum(korquad_f1(p, list(r)) for p, r in zip(predictions, references))
        return {"exact_match": em / n, "f1": f1 / n}
