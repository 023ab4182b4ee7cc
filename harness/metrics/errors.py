"""The one exception type the metrics layer raises.

It is a ValueError (bad values passed in) and a HarnessError, so the CLI's
single handler turns it into one line on stderr instead of a traceback.
"""

from harness.errors import HarnessError


class MetricError(HarnessError, ValueError):
    """A metric cannot be computed from the given input.

    The message is one line: which sample or field is wrong, and what to do.
    """
