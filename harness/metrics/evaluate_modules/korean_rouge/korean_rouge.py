"""ROUGE with Korean-aware tokenizers as a Hugging Face ``evaluate`` module.

Load it offline from its folder:
    evaluate.load("/abs/path/harness/metrics/evaluate_modules/korean_rouge")
``evaluate`` copies this file into its cache before importing it, so it must
import the installed ``harness`` package with absolute imports only.
"""

import datasets
import evaluate

from harness.metrics.errors import MetricError
from harness.metrics.rouge import ROUGE_TYPES, KoreanRouge
from harness.metrics.rouge_competition import COMPETITION_TYPES, CompetitionRouge

_DESCRIPTION = """\
ROUGE-1/2/L/Lsum F-measure (0-100) via rouge-score, with tokenizers that keep
Korean (mecab, whitespace, kiwi, char), rouge-score's own (English), or auto.
scorer='korean_competition' reproduces the NIKL competition scorer instead.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted texts.
    references: list of reference texts, or list of lists (max over references).
    tokenizer: 'auto' (default), 'mecab', 'whitespace', 'kiwi', 'char' or 'rouge-score'.
    scorer: 'rouge-score' (default: max over references) or 'korean_competition'
        (the NIKL competition scorer: counts summed over references, union LCS over
        lines, 1,000-word limit; rouge1/rouge2/rougeL, tokenizer auto means mecab).
    rouge_types: subset of ['rouge1', 'rouge2', 'rougeL', 'rougeLsum']
        (['rouge1', 'rouge2', 'rougeL'] for korean_competition).
    use_aggregator: if True (default) return means, else per-sample lists.
Returns:
    one entry per rouge type, plus 'tokenizer' (the tokenizer actually used)
    and 'tokenizer_version'.
Example:
    >>> rouge = evaluate.load("harness/metrics/evaluate_modules/korean_rouge")
    >>> rouge.compute(predictions=["한국어 요약"], references=["한국어 요약"], tokenizer="mecab")["rouge1"]
    100.0
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
  author = "Lin, Chin-Yew",
  booktitle = "Text Summarization Branches Out",
  year = "2004",
  url = "https://aclanthology.org/W04-1013",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KoreanRougeMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Value("string"),
                    }
                ),
            ],
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(
        self, predictions, references, tokenizer="auto", rouge_types=None, use_aggregator=True,
        scorer="rouge-score",
    ):
        from harness.metrics.registry import build_metric

        if not predictions:
            raise MetricError("korean_rouge: no predictions to score; pass at least one sample")
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        if scorer == "korean_competition":
            types = tuple(rouge_types or COMPETITION_TYPES)
            CompetitionRouge(rouge_types=types)  # validates the types
            metrics = [build_metric(t, {"tokenizer": tokenizer, "scorer": scorer}) for t in types]
            result = {}
            for rouge_type, metric in zip(types, metrics):
                values = [metric.per_sample(p, r) for p, r in zip(predictions, refs)]
                result[rouge_type] = sum(values) / len(values) if use_aggregator else values
            result["tokenizer"] = metrics[0].label.split("[", 1)[1].split(",", 1)[0]
            result["tokenizer_version"] = metrics[0].version
            result["scorer"] = scorer
            return result
        if scorer != "rouge-score":
            raise MetricError(
                f"korean_rouge: unknown scorer {scorer!r}; choose 'rouge-score' or 'korean_competition'"
            )
        rouge = KoreanRouge(
            tokenizer=tokenizer,
            rouge_types=tuple(rouge_types or ROUGE_TYPES),
            references_sample=refs,
        )
        per_sample = [rouge.score(p, r, sample=i) for i, (p, r) in enumerate(zip(predictions, refs))]
        result = {}
        for rouge_type in rouge.rouge_types:
            values = [s[rouge_type] for s in per_sample]
            if use_aggregator:
                result[rouge_type] = sum(values) / len(values)
            else:
                result[rouge_type] = values
        result["tokenizer"] = rouge.tokenizer
        result["tokenizer_version"] = rouge.version
        result["scorer"] = scorer
        return result
