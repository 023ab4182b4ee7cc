"""`harness merge`: fold adapters into the base, export, and prove the export is the model
that was evaluated.

An adapter trained with QLoRA learned against the NF4-quantized base. Merging it into the
original half-precision weights (what most scripts do) gives a model that was never
evaluated; `dequantize=True` merges into the NF4-dequantized base instead, so the export
computes what was trained and evaluated. Verification always runs and names the gap it finds:
a merge error (export vs the same base + adapter unmerged) or a quantization gap (export vs
the 4-bit base + adapter, the way eval loads it).

load base (export dtype, or 4-bit then dequantized) → attach adapters → reference logits,
unmerged → merge → save to a temporary directory → reload the export alone → compare with
the unmerged reference and with the 4-bit path → write merge_record.json → rename into place.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import __version__
from harness.config.model import Quantization
from harness.errors import ConfigError, HarnessError
from harness.model.adapters import AdapterInfo, check_against, inspect_adapter
from harness.model.families import check_base, was_conv1d
from harness.model.loading import LoadedBase, config_signature, load_base, resolve_model_ref
from harness.runtime.env import detect, release_cuda_memory
from harness.runtime.files import atomic_write_json
from harness.runtime.staging import release, staging_dir

METHODS = ("linear", "cat", "ties", "dare_linear", "dare_ties")
DTYPES = ("bf16", "fp16", "fp32")
# Merging is exact in real arithmetic; what is left is rounding in the export dtype.
MERGE_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.05}
PROBES = [
    "### 문맥:\n은솔마을은 1962년에 광산 노동자들이 모여 만든 마을이다.\n\n### 질문:\n은솔마을은 언제 생겼는가?\n\n### 답변:\n",
    "한국의 수도는 서울이며, 가장 큰 항구 도시는",
    "### Instruction:\nSummarise in one sentence why the sky is blue.\n\n### Response:\n",
    "The quick brown fox jumps over the lazy dog because",
]


@dataclass
class MergeRequest:
    base: str
    adapters: list[str]
    out: str
    weights: list[float] | None = None
    method: str = "linear"
    density: float = 0.5
    dtype: str = "bf16"
    dequantize: bool = False
    overwrite: bool = False
    tolerance: float | None = None
    quantization_tolerance: float | None = None
    probes: list[str] = field(default_factory=list)
    run_dir: str | None = None
    greedy_tokens: int = 16


def validate(req: MergeRequest) -> None:
    if not req.adapters:
        raise ConfigError("--adapter: give at least one adapter directory to merge")
    if req.method not in METHODS:
        raise ConfigError(f"--method {req.method}: unknown merge method; choose one of {', '.join(METHODS)}")
    if req.dtype not in DTYPES:
        raise ConfigError(f"--dtype {req.dtype}: choose one of {', '.join(DTYPES)}")
    if req.weights is not None and len(req.weights) != len(req.adapters):
        raise ConfigError(
            f"--weights: {len(req.weights)} weights for {len(req.adapters)} adapters; give one weight per adapter"
        )
    if len(req.adapters) == 1 and req.weights not in (None, [1.0]) and req.method != "linear":
        raise ConfigError("--weights/--method combine several adapters; with one adapter leave them out")
    out = Path(req.out)
    if out.exists() and not req.overwrite:
        raise HarnessError(f"{out}: already exists; pass --overwrite or choose another --out")
    if req.run_dir:
        _eval_results(req.run_dir)  # a damaged run fails here, not after the merge


def merge(req: MergeRequest, log=print) -> dict:
    import torch

    validate(req)
    base_path = resolve_model_ref(req.base)
    check_base(req.base, base_path)  # a family harness cannot serve is refused before anything is read
    infos = [inspect_adapter(f"a{i}" if len(req.adapters) > 1 else "adapter", p) for i, p in enumerate(req.adapters)]
    quant = _training_quantization(infos)
    env = detect()
    dtype = getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[req.dtype])
    probes = req.probes or _probes_from_adapter(infos[0]) or PROBES

    # 0. an adapter for another base fails here, before minutes of loading weights
    from transformers import AutoConfig

    try:
        signature = config_signature(AutoConfig.from_pretrained(base_path))
    except (OSError, ValueError) as exc:  # not on disk and not reachable, or an architecture transformers lacks
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HarnessError(
            f"--base {req.base}: cannot read its config ({first}); give a local model directory, "
            "a hub id that is cached (or reachable), or tiny:llama-ko"
        ) from None
    for info in infos:
        check_against(info, req.base, base_path, signature)
        _require_finite_weights(info)

    # 1. the base in the export dtype: plain weights, or the NF4 weights the adapter trained on
    if req.dequantize:
        base = load_base(req.base, quant.model_copy(update={"compute_dtype": req.dtype}), env)
        dequantize_in_place(base.model, dtype)
    else:
        base = load_base(req.base, Quantization(mode="none", compute_dtype=req.dtype), env)
    _check_disk(base.model, Path(req.out), dtype)

    # 2. adapters attached, reference outputs before merging
    model = _combined(base, infos, req)
    reference = probe_outputs(model, base.tokenizer, probes, req.greedy_tokens)
    _require_finite(reference, f"{req.base} + the adapters, unmerged,", "nothing was exported")
    merged = model.merge_and_unload()
    log(
        f"harness merge: merged {len(infos)} adapter(s) ({req.method if len(infos) > 1 else 'single'}) "
        f"into {req.base} as {req.dtype}{' (NF4-dequantized base)' if req.dequantize else ''}"
    )

    # 3. write to a temporary directory next to --out; rename only when complete
    out = Path(req.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)  # and removes what a killed merge to the same --out left
    try:
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size="2GB")
        base.tokenizer.save_pretrained(tmp)
        del merged, model, base
        release_cuda_memory()
        export_out = _export_outputs(tmp, probes, dtype, req.greedy_tokens)
        _require_finite(export_out, "the export", f"{out} was left as it was")
        evaluated = _evaluated_outputs(req, infos, quant, env, probes)
        _require_finite(evaluated, f"the {quant.mode} base + the adapters, as evaluated,", f"{out} was left as it was")
        record = _record(req, infos, quant, probes, reference, export_out, evaluated)
        atomic_write_json(tmp / "merge_record.json", record)
        (tmp / "README.md").write_text(model_card(record, req.run_dir), encoding="utf-8")
        release(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _put_in_place(tmp, out, record)


def failed_export_path(out: Path) -> Path:
    """Where an export that failed verification is kept for inspection, beside --out."""
    return out.with_name(out.name + ".failed")


def _put_in_place(tmp: Path, out: Path, record: dict) -> dict:
    """A verified export replaces --out; one that failed goes beside it, so an earlier good export
    under --overwrite survives a bad merge."""
    target = out if record["verification"]["passed"] else failed_export_path(out)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    record["exported_to"] = str(target)
    return record


def _require_finite_weights(info: AdapterInfo) -> None:
    """An adapter holding NaN or infinite weights (a diverged run) merges into a broken model."""
    from safetensors import safe_open

    for file in sorted(Path(info.path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open has keys(), not __iter__)
                if not bool(weights.get_tensor(key).isfinite().all()):
                    raise HarnessError(
                        f"{file}: tensor '{key}' holds NaN or infinite values (the training "
                        f"diverged); retrain with a lower training.learning_rate, nothing was merged"
                    )


def _require_finite(outputs: list[dict], what: str, consequence: str) -> None:
    """Verification compares logits by their largest difference, and max() over NaN says nothing:
    a model that computes NaN or inf is refused before it is compared, saved or uploaded."""
    for probe, output in enumerate(outputs, 1):
        if not bool(output["logits"].isfinite().all()):
            raise HarnessError(
                f"{what} computes NaN or infinite logits on probe {probe}; {consequence}; "
                "check the adapters (harness eval shows their metrics) and the --dtype"
            )


def dequantize_in_place(model, dtype) -> None:
    """Replace every bitsandbytes 4-bit/8-bit linear layer by a plain one holding its dequantized weights,
    in the layer's own class: a GPT-2 Conv1D (quantized as a Linear4bit of the transposed weight) turns back
    into a Conv1D, so the export holds the layout its architecture loads."""
    for name, module in list(model.named_modules()):
        if type(module).__name__ not in {"Linear4bit", "Linear8bitLt"}:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, _dequantized(module, dtype))
    # The model is no longer quantized: drop every marker, or transformers refuses to cast or
    # saves a quantization_config that would make loaders quantize the export again.
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if hasattr(model, attr):
            setattr(model, attr, False)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.to(dtype)


def _dequantized(module, dtype):
    import torch
    from peft.utils.integrations import dequantize_bnb_weight
    from transformers.pytorch_utils import Conv1D

    weight = dequantize_bnb_weight(module.weight, state=getattr(module.weight, "quant_state", None) or module.state)
    if was_conv1d(module):
        plain = Conv1D(module.out_features, module.in_features).to(dtype=dtype, device=weight.device)
        weight = weight.T
    else:
        plain = torch.nn.Linear(
            module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype, device=weight.device
        )
    with torch.no_grad():
        plain.weight.copy_(weight.to(dtype))
        if module.bias is not None:
            plain.bias.copy_(module.bias.to(dtype))
    return plain


def probe_outputs(model, tokenizer, prompts: list[str], greedy_tokens: int) -> list[dict]:
    """Per prompt: the logits over the prompt (float32, CPU) and the greedy continuation."""
    import torch

    device = next(model.parameters()).device
    outputs = []
    model.eval()
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0].float().cpu()
            generated = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=greedy_tokens,
                min_new_tokens=greedy_tokens,
                pad_token_id=tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        outputs.append({"logits": logits, "greedy": generated[0, ids.shape[1] :].tolist()})
    return outputs


def compare(a: list[dict], b: list[dict]) -> dict:
    max_diff, total, count, agree, tokens = 0.0, 0.0, 0, 0, 0
    for x, y in zip(a, b):
        diff = (x["logits"] - y["logits"]).abs()
        max_diff = max(max_diff, float(diff.max()))
        total += float(diff.sum())
        count += diff.numel()
        agree += sum(int(p == q) for p, q in zip(x["greedy"], y["greedy"]))
        tokens += max(len(x["greedy"]), len(y["greedy"]))
    return {
        "max_abs_logit_diff": max_diff,
        "mean_abs_logit_diff": total / count if count else 0.0,
        "greedy_token_agreement": agree / tokens if tokens else 1.0,
    }


def _combined(base: LoadedBase, infos: list[AdapterInfo], req: MergeRequest):
    import warnings

    from peft import PeftModel

    try:
        with warnings.catch_warnings():
            # An adapter trained on a 4-bit GPT-2 saw its Conv1D layers in nn.Linear layout; on the Conv1D
            # itself peft flips fan_in_fan_out to match, which is right, and says so on stderr.
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False", category=UserWarning)
            model = PeftModel.from_pretrained(base.model, infos[0].path, adapter_name=infos[0].name)
            for info in infos[1:]:
                model.load_adapter(info.path, adapter_name=info.name)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HarnessError(
            f"an adapter does not fit base '{req.base}': {first}; merge adapters trained on this base"
        ) from None
    if len(infos) > 1:
        weights = req.weights or [1.0 / len(infos)] * len(infos)
        density = req.density if req.method in {"ties", "dare_linear", "dare_ties"} else None
        try:
            model.add_weighted_adapter(
                [i.name for i in infos], weights, "merged", combination_type=req.method, density=density
            )
        except ValueError as exc:
            raise HarnessError(f"--method {req.method}: {str(exc).splitlines()[0]}") from None
        model.set_adapter("merged")
    return model.eval()


def _export_outputs(path: Path, probes, dtype, greedy_tokens):
    """The export as a user will load it: AutoModelForCausalLM alone, no peft, no harness."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, device_map={"": 0} if torch.cuda.is_available() else None
    )
    outputs = probe_outputs(model, AutoTokenizer.from_pretrained(path), probes, greedy_tokens)
    del model
    release_cuda_memory()
    return outputs


def _evaluated_outputs(req: MergeRequest, infos, quant: Quantization, env, probes):
    """Base in 4-bit + adapters, as harness eval loads them."""
    base = load_base(req.base, quant, env)
    model = _combined(base, infos, req)
    outputs = probe_outputs(model, base.tokenizer, probes, req.greedy_tokens)
    del model, base
    release_cuda_memory()
    return outputs


def _record(req: MergeRequest, infos, quant, probes, reference, export_out, evaluated) -> dict:
    merge_gap = compare(export_out, reference)
    quant_gap = compare(export_out, evaluated)
    merge_tol = req.tolerance if req.tolerance is not None else MERGE_TOLERANCE[req.dtype]
    # Against the 4-bit path only a --dequantize export is expected to agree; a plain export's
    # gap is reported (that is the point) and fails only when the user sets a tolerance.
    quant_tol = req.quantization_tolerance
    if quant_tol is None and req.dequantize:
        quant_tol = MERGE_TOLERANCE[req.dtype] * 10
    failures = []
    if merge_gap["max_abs_logit_diff"] > merge_tol:
        failures.append(
            f"merge error: export differs from base + adapter unmerged by "
            f"{merge_gap['max_abs_logit_diff']:.3g} > {merge_tol:g}"
        )
    if quant_tol is not None and quant_gap["max_abs_logit_diff"] > quant_tol:
        failures.append(
            f"quantization gap: export differs from the evaluated 4-bit base + adapter by "
            f"{quant_gap['max_abs_logit_diff']:.3g} > {quant_tol:g}"
            + ("" if req.dequantize else "; merge with --dequantize to export what was evaluated")
        )
    return {
        "harness_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base": req.base,
        "dtype": req.dtype,
        "dequantize": req.dequantize,
        "method": req.method,
        "weights": req.weights,
        "density": req.density if req.method in {"ties", "dare_linear", "dare_ties"} else None,
        "quantization_of_evaluated_path": quant.model_dump(),
        "adapters": [
            {"path": i.path, "sha256": i.sha256, "train_record": _train_summary(i.train_record)} for i in infos
        ],
        "probes": probes,
        "verification": {
            "export_vs_unmerged": {**merge_gap, "tolerance": merge_tol},
            "export_vs_evaluated_4bit": {**quant_gap, "tolerance": quant_tol},
            "passed": not failures,
            "failures": failures,
            "note": _gap_note(req, quant_gap, merge_tol),
        },
        "eval_run": _eval_results(req.run_dir),
    }


def _gap_note(req: MergeRequest, quant_gap: dict, merge_tol: float) -> str | None:
    if req.dequantize or quant_gap["max_abs_logit_diff"] <= merge_tol:
        return None
    return (
        f"This export merges into the original {req.dtype} weights, but the adapter was trained and evaluated on "
        f"the NF4 base: it differs from the evaluated model by up to {quant_gap['max_abs_logit_diff']:.3g} in the "
        f"logits ({quant_gap['greedy_token_agreement']:.0%} greedy agreement). Merge with --dequantize to export "
        f"the model that was evaluated."
    )


def _train_summary(record: dict | None) -> dict | None:
    if not record:
        return None
    losses = [h["loss"] for h in record.get("history", []) if "loss" in h]
    return {
        "base_model": record.get("base_model"),
        "data": record.get("data"),
        "steps": record.get("global_steps"),
        "final_loss": losses[-1] if losses else None,
        "lora": (record.get("config") or {}).get("lora"),
    }


def _eval_results(run_dir: str | None) -> dict | None:
    if not run_dir:
        return None
    from harness.runs.store import RunDir, check_results

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise HarnessError(f"--run {run_dir}: no results.json there; give a run directory written by harness eval")
    results = RunDir(Path(run_dir)).read_json("results.json")
    check_results(results, path)
    return {k: results.get(k) for k in ("suite", "run_id", "n_samples", "metrics", "deltas", "metric_info")}


def _training_quantization(infos: list[AdapterInfo]) -> Quantization:
    """The quantization the (first) adapter was trained with, else harness's default NF4."""
    for info in infos:
        config = ((info.train_record or {}).get("config") or {}).get("quantization")
        if config and config.get("mode") in {"nf4", "fp4", "int8"}:
            return Quantization.model_validate(config)
    return Quantization()


def _probes_from_adapter(info: AdapterInfo) -> list[str]:
    """A few prompts from the data the adapter was trained on, rendered with its template."""
    record = info.train_record or {}
    data = (record.get("config") or {}).get("data") or {}
    try:
        from harness.data.prompts import load_template
        from harness.data.readers import load_dataset

        dataset = load_dataset(
            data["path"], data.get("format", "auto"), data.get("split", "train"), data.get("fields"), 3, 0
        )
        template = load_template(data.get("template", "qa-ko"), data.get("prompt"), data.get("response"))
        return [template.render_prompt(e) for e in dataset.examples]
    except (HarnessError, KeyError, OSError):
        return []


def _check_disk(model, out: Path, dtype) -> None:
    import torch

    needed = sum(p.numel() for p in model.parameters()) * torch.finfo(dtype).bits // 8
    parent = out.parent if out.parent.exists() else Path(".")
    free = shutil.disk_usage(parent).free
    if free < needed * 1.1:
        raise HarnessError(
            f"{out}: the export needs about {needed / 2**30:.1f} GiB but {parent} has "
            f"{free / 2**30:.1f} GiB free; free space or choose another --out"
        )


def model_card(record: dict, run_dir: str | None) -> str:
    v = record["verification"]
    lines = [
        "---",
        f"base_model: {record['base']}",
        "library_name: transformers",
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
    lines += [
        "",
        "## Verification",
        "",
        "| compared with | max abs logit diff | mean abs logit diff | greedy agreement |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key in (
        ("base + adapter, unmerged (merge error)", "export_vs_unmerged"),
        ("4-bit base + adapter, as evaluated (quantization gap)", "export_vs_evaluated_4bit"),
    ):
        g = v[key]
        lines.append(
            f"| {label} | {g['max_abs_logit_diff']:.3g} | {g['mean_abs_logit_diff']:.3g} | "
            f"{g['greedy_token_agreement']:.1%} |"
        )
    lines += ["", "Passed." if v["passed"] else "**Failed:** " + "; ".join(v["failures"])]
    if v.get("note"):
        lines += ["", v["note"]]
    if record.get("eval_run"):
        from harness.runs.summary import results_table

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
