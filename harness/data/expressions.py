"""jinja2 templates and expressions over a dataset example, as lm-evaluation-harness evaluates its task
fields: undefined names are errors, text is never escaped, a trailing newline is kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jinja2

from harness.errors import ConfigError, DataError

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def template(source: str, where: str) -> Callable[[dict, str], str]:
    """`render(example, example_name)`: the template's text for an example."""
    try:
        compiled = _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: jinja2 syntax error: {exc.message}") from None

    def render(example: dict, name: str) -> str:
        try:
            return compiled.render(**example)
        except jinja2.UndefinedError as exc:
            raise DataError(f"{name}: {where}: {exc.message}; the example's fields are: {_fields(example)}") from None
        except Exception as exc:  # a jinja2 filter or an operator on the wrong type
            raise DataError(f"{name}: {where}: {type(exc).__name__}: {exc}") from None

    return render


def expression(source: str, where: str) -> Callable[[dict, str], Any]:
    """`evaluate(example, example_name)`: the expression's value (a number, a list, …) for an example."""
    try:
        compiled = _ENV.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{where}: jinja2 syntax error in expression {source!r}: {exc.message}") from None

    def evaluate(example: dict, name: str) -> Any:
        try:
            value = compiled(**example)
        except jinja2.UndefinedError as exc:
            raise DataError(f"{name}: {where}: {exc.message}; the example's fields are: {_fields(example)}") from None
        except Exception as exc:
            raise DataError(f"{name}: {where}: {source!r} failed: {type(exc).__name__}: {exc}") from None
        if isinstance(value, jinja2.Undefined):
            raise DataError(f"{name}: {where}: {source!r} is undefined; the example's fields are: {_fields(example)}")
        return value

    return evaluate


def _fields(example: dict) -> str:
    return ", ".join(sorted(example)) or "(none)"
