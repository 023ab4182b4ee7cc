"""The training examples: dataset → TRL rows ({prompt, completion} or {text}), split into train and
validation, and their token lengths as the memory plan needs them."""

from __future__ import annotations

from harness.config import TrainConfig
from harness.data.prompts import chat_messages, load_template
from harness.data.readers import load_dataset, reader_options, split_validation
from harness.errors import ConfigError
from harness.train.selection import check_validation_rows


def build_examples(config: TrainConfig) -> tuple[list[dict], list[dict], dict]:
    """Dataset → TRL rows ({prompt, completion} or {text}), split into train and validation."""
    d = config.data
    dataset = load_dataset(d.path, d.format, d.split, d.fields, d.limit, d.seed, **reader_options(d))
    template = load_template(d.template, d.prompt, d.response, where="data.template")
    if template.response is None and d.loss_on == "response":
        raise ConfigError(f"data.loss_on: template '{d.template}' has no response part; set data.loss_on: all")
    if d.validation_split:
        train_ex = dataset.examples
        validation = load_dataset(
            d.path, d.format, d.validation_split, d.fields, None, d.seed, **reader_options(d)
        ).examples
    else:
        train_ex, validation = split_validation(dataset.examples, d.validation_fraction, d.seed)
    check_validation_rows(config, validation)

    def row(example: dict) -> dict:
        where = f"{d.path} example '{example.get('id', '?')}'"
        prompt = template.render_prompt(example, where)
        response = template.render_response(example, where)
        if response is None:
            return {"text": prompt}
        if d.chat:
            return {"prompt": chat_messages(prompt), "completion": [{"role": "assistant", "content": response}]}
        return {"prompt": prompt, "completion": response}

    info = {
        "path": d.path,
        "file": dataset.path,
        "format": dataset.format,
        "sha256": dataset.sha256,
        "examples": len(train_ex),
        "validation_examples": len(validation),
        "template": d.template,
    }
    return [row(e) for e in train_ex], [row(e) for e in validation], info


def row_token_lengths(rows: list[dict], tokenizer, max_length: int) -> list[int]:
    """Tokens per training row as TRL will see them, give or take the chat template's and EOS's few."""
    texts = []
    for row in rows:
        if "text" in row:
            texts.append(row["text"])
        elif isinstance(row["prompt"], str):
            texts.append(row["prompt"] + row["completion"])
        else:  # chat messages: their contents stand in for the rendered template
            texts.append("\n".join(m["content"] for m in row["prompt"] + row["completion"]))
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []
    return [min(len(x) + 1, max_length) for x in ids]
