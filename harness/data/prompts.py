"""Prompt templates (jinja2): built-in ones, files, inline strings, and the model's chat template."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from harness.errors import ConfigError, DataError

BUILTIN_TEMPLATES: dict[str, dict[str, str | None]] = {
    "qa-ko": {
        "prompt": "### 문맥:\n{{ context }}\n\n### 질문:\n{{ question }}\n\n### 답변:\n",
        "response": "{{ answer }}",
    },
    "qa-en": {
        "prompt": "### Context:\n{{ context }}\n\n### Question:\n{{ question }}\n\n### Answer:\n",
        "response": "{{ answer }}",
    },
    # The seed tutorials' instruction format.
    "alpaca": {
        "prompt": "### Instruction:\n{{ instruction }}\n\n{% if input is defined and input %}### Input:\n{{ input }}\n\n{% endif %}### Response:\n",
        "response": "{{ output }}",
    },
    "prompt-response": {"prompt": "{{ prompt }}", "response": "{{ response }}"},
    "summarize-ko": {"prompt": "### 문서:\n{{ document }}\n\n### 요약:\n", "response": "{{ summary }}"},
    "summarize-en": {"prompt": "### Document:\n{{ document }}\n\n### Summary:\n", "response": "{{ summary }}"},
    "text": {"prompt": "{{ text }}", "response": None},
}

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class Template:
    name: str
    prompt: str
    response: str | None

    def render_prompt(self, example: dict, where: str = "") -> str:
        return _render(self.prompt, example, self.name, where)

    def render_response(self, example: dict, where: str = "") -> str | None:
        return None if self.response is None else _render(self.response, example, self.name, where)


def load_template(
    name: str, prompt: str | None = None, response: str | None = None, where: str = "template"
) -> Template:
    """A built-in name or a YAML file with `prompt:`/`response:`; inline strings override either part."""
    if name in BUILTIN_TEMPLATES:
        base = BUILTIN_TEMPLATES[name]
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{where}: '{name}' is neither a built-in template ({', '.join(BUILTIN_TEMPLATES)}) nor a file"
            )
        try:
            base = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            raise ConfigError(f"{path}: invalid YAML; a template file holds 'prompt:' and 'response:'") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the template as UTF-8") from None
        if not isinstance(base, dict) or "prompt" not in base:
            raise ConfigError(
                f"{path}: missing field 'prompt'; a template file holds 'prompt:' and optionally 'response:'"
            )
        for key in ("prompt", "response"):
            if base.get(key) is not None and not isinstance(base[key], str):
                raise ConfigError(f"{path}: field '{key}' is a {type(base[key]).__name__}; write it as jinja2 text")
    template = Template(
        name=name,
        prompt=prompt if prompt is not None else base["prompt"],
        response=response if response is not None else base.get("response"),
    )
    for part in (template.prompt, template.response):
        if part is not None:
            try:
                _ENV.from_string(part)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"{where}: jinja2 syntax error in template '{name}': {exc.message}") from None
    return template


def _render(source: str, example: dict, name: str, where: str) -> str:
    try:
        return _ENV.from_string(source).render(**example)
    except jinja2.UndefinedError as exc:
        field = str(exc.message).split("'")[1] if "'" in str(exc.message) else str(exc.message)
        fields = ", ".join(sorted(k for k in example if not k.startswith("_")))
        raise DataError(
            f"{where}: template '{name}' uses field '{field}' that example '{example.get('id', '?')}' lacks; "
            f"available fields: {fields} (map one with the fields mapping: data.fields in train, dataset.fields in suites)"
        ) from None


def chat_messages(prompt: str, response: str | None = None, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def apply_chat_template(tokenizer, prompt: str, system: str | None = None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat: the model's tokenizer has no chat template; use a plain template instead")
    return tokenizer.apply_chat_template(
        chat_messages(prompt, system=system), tokenize=False, add_generation_prompt=True
    )
