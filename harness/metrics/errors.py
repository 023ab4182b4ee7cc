"""The one exception type the metrics layer raises.

It is a ValueError (bad values passed in) and a HarnessError, so the CLI's
single handler turns it into one line on stderr instead of a traceback.
"""

from harness.errors import HarnessError


class MetricError(HarnessError, ValueError):
    """A metric cannot be computed from the given input.

    The message is one line: which sample or field is wrong, and what to do.
    """


def check_aligned(predictions, references, metric: str = "") -> None:
    """One reference list per prediction, and at least one sample; `metric` prefixes the message."""
    prefix = f"{metric}: " if metric else ""
    if len(predictions) != len(references):
        raise MetricError(
            f"{prefix}{len(predictions)} predictions but {len(references)} reference lists; "
            "pass one reference list per prediction"
        )
    if not predictions:
        raise MetricError(f"{prefix}no samples to score; pass at least one prediction")
