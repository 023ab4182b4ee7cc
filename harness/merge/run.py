"""`harness merge`: fold adapters into the base, export, and prove the export is the model
that was evaluated.

An adapter trained with QLoRA learned against the NF4-quantized base. Merging it into the
original half-precision weights (what most scripts do) gives a model that was never
evaluated; `dequantize=True` merges into the NF4-dequantized base instead, so the export
computes what was trained and evaluated. Verification always runs and names the gap it finds:
a merge error (export vs the same base + adapter unmerged) or a quantization gap (export vs
the 4-bit base + adapter, the way eval loads it; harness.merge.verify).

load base (export dtype, or 4-bit then dequantized) → attach adapters → reference logits,
unmerged → merge → save to a temporary directory → reload the export alone → compare with
the unmerged reference and with the 4-bit path → write merge_record.json → rename into place.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.model import Quantization
from harness.errors import ConfigError, HarnessError, first_line
from harness.merge import verify
from harness.merge.card import model_card
from harness.merge.combine import combined
from harness.merge.options import DTYPES, METHODS
from harness.merge.record import eval_results, merge_record
from harness.model.adapters import AdapterInfo, check_against, inspect_adapter
from harness.model.dequantize import dequantize_for_export
from harness.model.families import check_base, is_encoder_decoder
from harness.model.loading import config_signature, load_base, resolve_model_ref
from harness.runtime.env import detect, release_cuda_memory, torch_dtype
from harness.runtime.files import atomic_write_json
from harness.runtime.staging import release, staging_dir

logger = logging.getLogger(__name__)


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
        eval_results(req.run_dir)  # a damaged run fails here, not after the merge


def merge(req: MergeRequest) -> dict:
    """Merge, export and verify as `req` says; the merge record (see harness.merge.record), with
    `exported_to`: --out when verification passed, else the failed export beside it."""
    validate(req)
    base_path = resolve_model_ref(req.base)
    check_base(req.base, base_path)  # a family harness cannot serve is refused before anything is read
    infos = [inspect_adapter(f"a{i}" if len(req.adapters) > 1 else "adapter", p) for i, p in enumerate(req.adapters)]
    quant = _training_quantization(infos)
    env = detect()
    probes = req.probes or _probes_from_adapter(infos[0]) or verify.PROBES
    _check_adapters(req, base_path, infos)  # an adapter for another base fails here, before minutes of loading
    merged, tokenizer, reference = _merged(req, infos, quant, env, probes)

    # written to a temporary directory next to --out, renamed only when complete
    out = Path(req.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(out)  # and removes what a killed merge to the same --out left
    try:
        merged.save_pretrained(tmp, safe_serialization=True, max_shard_size="2GB")
        tokenizer.save_pretrained(tmp)
        encoder_decoder = is_encoder_decoder(merged.config)
        del merged
        release_cuda_memory()
        record = _verified_record(req, tmp, infos, quant, env, probes, reference)
        atomic_write_json(tmp / "merge_record.json", record)
        (tmp / "README.md").write_text(model_card(record, req.run_dir, encoder_decoder), encoding="utf-8")
        release(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _put_in_place(tmp, out, record)


def _merged(req: MergeRequest, infos: list[AdapterInfo], quant: Quantization, env, probes: list[str]):
    """(the base with the adapters merged in, its tokenizer, the probes' outputs before merging)."""
    dtype = torch_dtype(req.dtype)
    # the base in the export dtype: plain weights, or the NF4 weights the adapter trained on
    if req.dequantize:
        base = load_base(req.base, quant.model_copy(update={"compute_dtype": req.dtype}), env)
        dequantize_for_export(base.model, dtype)
    else:
        base = load_base(req.base, Quantization(mode="none", compute_dtype=req.dtype), env)
    _check_disk(base.model, Path(req.out), dtype)
    model = combined(base, infos, req)
    reference = verify.probe_outputs(model, base.tokenizer, probes, req.greedy_tokens)
    verify.require_finite(reference, f"{req.base} + the adapters, unmerged,", "nothing was exported")
    merged = model.merge_and_unload()
    logger.info(
        f"harness merge: merged {len(infos)} adapter(s) ({req.method if len(infos) > 1 else 'single'}) "
        f"into {req.base} as {req.dtype}{' (NF4-dequantized base)' if req.dequantize else ''}"
    )
    return merged, base.tokenizer, reference


def _verified_record(req: MergeRequest, tmp: Path, infos, quant: Quantization, env, probes, reference) -> dict:
    """The merge record of the export written in `tmp`, verified against the unmerged `reference` and
    the 4-bit base + adapters as evaluated."""
    out = Path(req.out)
    export_out = verify.export_outputs(tmp, probes, torch_dtype(req.dtype), req.greedy_tokens, reference)
    verify.require_finite(export_out, "the export", f"{out} was left as it was")
    evaluated = verify.evaluated_outputs(req, infos, quant, env, probes, reference)
    verify.require_finite(
        evaluated, f"the {quant.mode} base + the adapters, as evaluated,", f"{out} was left as it was"
    )
    return merge_record(req, infos, quant, probes, verify.verification(req, reference, export_out, evaluated))


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


def _check_adapters(req: MergeRequest, base_path: str, infos: list[AdapterInfo]) -> None:
    """Each adapter against the base's config (no weights read yet), and its weights all finite."""
    from transformers import AutoConfig

    try:
        signature = config_signature(AutoConfig.from_pretrained(base_path))
    except (OSError, ValueError) as exc:  # not on disk and not reachable, or an architecture transformers lacks
        raise HarnessError(
            f"--base {req.base}: cannot read its config ({first_line(exc)}); give a local model directory, "
            "a hub id that is cached (or reachable), or tiny:llama-ko"
        ) from None
    for info in infos:
        check_against(info, req.base, base_path, signature)
        _require_finite_weights(info)


def _require_finite_weights(info: AdapterInfo) -> None:
    """An adapter holding NaN or infinite weights (a diverged run) merges into a broken model."""
    from safetensors import safe_open

    for file in sorted(Path(info.path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open has keys() but cannot be iterated)
                if not bool(weights.get_tensor(key).isfinite().all()):
                    raise HarnessError(
                        f"{file}: tensor '{key}' holds NaN or infinite values (the training "
                        f"diverged); retrain with a lower training.learning_rate, nothing was merged"
                    )


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

        hub = {key: data.get(key) for key in ("name", "data_files", "revision")}
        dataset = load_dataset(
            data["path"], data.get("format", "auto"), data.get("split", "train"), data.get("fields"), 3, 0, hub=hub
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
