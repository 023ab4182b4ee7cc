"""The export's README.md: a model card written from merge_record.json."""

from __future__ import annotations

from harness.runs.summary import results_table

GAPS = (
    ("base + adapter, unmerged (merge error)", "export_vs_unmerged"),
    ("4-bit base + adapter, as evaluated (quantization gap)", "export_vs_evaluated_4bit"),
)

# An encoder-decoder export loads with the sequence-to-sequence class; AutoModelForCausalLM would
# build its decoder alone (BART) or refuse it (T5).
SEQ2SEQ_USAGE = [
    "",
    "## Usage",
    "",
    "An encoder-decoder (text-to-text): load it with `AutoModelForSeq2SeqLM`.",
    "",
    "```python",
    "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
    "",
    'model = AutoModelForSeq2SeqLM.from_pretrained("EXPORT_DIR_OR_REPO_ID")',
    'tokenizer = AutoTokenizer.from_pretrained("EXPORT_DIR_OR_REPO_ID")',
    'inputs = tokenizer("...", return_tensors="pt")',
    "print(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True))",
    "```",
]


def model_card(record: dict, run_dir: str | None, encoder_decoder: bool = False) -> str:
    """The card of an export; an encoder-decoder's says it is text-to-text and how to load it."""
    lines = [
        "---",
        f"base_model: {record['base']}",
        "library_name: transformers",
        *(["pipeline_tag: text2text-generation"] if encoder_decoder else []),
        "tags: [harness, qlora, merged]",
        "---",
        "",
        f"# Merged model: {record['base']} + {len(record['adapters'])} adapter(s)",
        "",
        f"Exported by harness {record['harness_version']} on {record['created_at']} as **{record['dtype']}**"
        + (
            ", merged into the **NF4-dequantized** base (computes what was trained and evaluated)."
            if record["dequantize"]
            else ", merged into the original base weights."
        ),
        "",
        "## Adapters",
        "",
    ]
    lines += _adapter_lines(record)
    if encoder_decoder:
        lines += SEQ2SEQ_USAGE
    lines += _verification_lines(record["verification"])
    if record.get("eval_run"):
        lines += [
            "",
            "## Evaluation",
            "",
            f"From run `{run_dir}`:",
            "",
            "```",
            results_table(record["eval_run"] | {"metric_info": record["eval_run"]["metric_info"]}),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _adapter_lines(record: dict) -> list[str]:
    lines = []
    for a in record["adapters"]:
        t = a["train_record"] or {}
        data = t.get("data") or {}
        lines.append(
            f"- `{a['path']}` (sha256 `{a['sha256'][:16]}…`): trained on `{t.get('base_model', '?')}`, "
            f"data `{data.get('path', '?')}` ({data.get('examples', '?')} examples), {t.get('steps', '?')} steps, "
            f"final loss {t.get('final_loss', '?')}"
        )
    if len(record["adapters"]) > 1:
        lines += ["", f"Combined with `{record['method']}`, weights {record['weights']}."]
    return lines


def _verification_lines(v: dict) -> list[str]:
    lines = [
        "",
        "## Verification",
        "",
        "| compared with | max abs logit diff | mean abs logit diff | greedy agreement |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key in GAPS:
        g = v[key]
        lines.append(
            f"| {label} | {g['max_abs_logit_diff']:.3g} | {g['mean_abs_logit_diff']:.3g} | "
            f"{g['greedy_token_agreement']:.1%} |"
        )
    lines += ["", "Passed." if v["passed"] else "**Failed:** " + "; ".join(v["failures"])]
    if v.get("note"):
        lines += ["", v["note"]]
    return lines
