"""The `choice` section of a suite: how each example becomes a context, its choices and the right one.

The fields mirror lm-evaluation-harness's `doc_to_text`, `doc_to_choice`, `doc_to_target` and
`target_delimiter`, so that a task definition there translates line for line: `context` is a jinja2
template, the others are jinja2 expressions evaluated on the example's fields."""

from __future__ import annotations

from pydantic import Field

from harness.config.loader import Strict


class ChoiceSettings(Strict):
    context: str = Field(
        "{{ question }}",
        description="jinja2 template of the text each choice continues (lm-evaluation-harness's doc_to_text)",
    )
    choices: str | list[str] = Field(
        "choices",
        description="a list of jinja2 templates, one per choice (`['아니오', '예']`), or one jinja2 expression "
        "giving the list (`choices`, `[ending_1, ending_2]`)",
    )
    gold: str = Field(
        "label",
        description="jinja2 expression giving the right choice: its index (`answer - 1`), its text, or a list of "
        "indices; a string of digits is an index, as in lm-evaluation-harness",
    )
    target_delimiter: str = Field(" ", description="text between the context and each choice")
    subject: str | None = Field(
        None, description="jinja2 expression naming each example's subject (a breakdown with micro and macro means)"
    )
    categories: dict[str, str] = Field(
        default_factory=dict,
        description="subject → category (a second breakdown, e.g. KMMLU's STEM, Applied Science, HUMSS, Other)",
    )
