"""`harness merge`."""

from __future__ import annotations

import argparse
import contextlib
import logging

HELP = "fold adapters into the base, export safetensors + tokenizer + model card, and verify the export"


def register(sub) -> None:
    from harness.merge.options import DTYPES, METHODS

    p = sub.add_parser(
        "merge",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="A QLoRA adapter learned against the NF4 base: --dequantize merges into that base so the export "
        "computes what was evaluated. Verification compares the export with base + adapter unmerged (merge "
        "error) and with the 4-bit base + adapter (quantization gap); beyond a tolerance it exits 1.",
    )
    p.add_argument("--base", required=True, help="base model: hub id, local path or tiny:llama-ko")
    p.add_argument("--adapter", action="append", required=True, metavar="PATH", help="adapter directory (repeatable)")
    p.add_argument("--weights", help="comma-separated weight per adapter, e.g. 0.7,0.3 (several adapters)")
    p.add_argument(
        "--method", default="linear", help=f"how several adapters combine: {', '.join(METHODS)} (default linear)"
    )
    p.add_argument(
        "--density", type=float, default=0.5, help="fraction of weights kept by ties/dare methods (default 0.5)"
    )
    p.add_argument("--out", required=True, help="export directory, e.g. exports/NAME (refused if it exists)")
    p.add_argument("--dtype", default="bf16", help=f"export dtype: {', '.join(DTYPES)} (default bf16)")
    p.add_argument(
        "--dequantize",
        action="store_true",
        help="merge into the NF4-dequantized base (what the adapter trained and was evaluated on)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument(
        "--tolerance",
        type=float,
        help="max abs logit difference allowed against base + adapter unmerged "
        "(default: 1e-3 fp32, 0.05 fp16, 0.25 bf16)",
    )
    p.add_argument(
        "--quantization-tolerance",
        type=float,
        help="max abs logit difference allowed against the 4-bit base + adapter (default: checked only "
        "with --dequantize, at 10x --tolerance)",
    )
    p.add_argument("--probes", help="text file of probe prompts, one per line (default: from the adapter's data)")
    p.add_argument("--run", help="an eval run directory whose results go into the model card")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the export to this hub repository (OWNER/NAME)")
    p.add_argument("--dry-run", action="store_true", help="with --push-to-hub: list what would be uploaded, no network")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from harness.merge.hub import push, upload_plan
    from harness.merge.run import merge
    from harness.runs.tables import format_table
    from harness.runtime.console import human_bytes

    request = _request(args)
    if args.push_to_hub:
        upload_plan(Path("."), args.push_to_hub)  # validate the repository id before minutes of merging
    with _shown_on_stdout("harness.merge"):
        record = merge(request)
    v = record["verification"]
    print(_gaps_table(v))
    if v.get("note"):
        print(f"note: {v['note']}")
    if not v["passed"]:
        for failure in v["failures"]:
            print(f"harness merge: verification failed: {failure}", flush=True)
        print(
            f"harness merge: {args.out} was left as it was; the failed export is kept for inspection in "
            f"{record['exported_to']}",
            flush=True,
        )
        return 1
    print(f"\nexport: {args.out} (merge_record.json, README.md)")
    if args.push_to_hub:
        plan = upload_plan(Path(args.out), args.push_to_hub)
        if args.dry_run:
            print(f"\ndry run: would upload {len(plan)} files to {args.push_to_hub}:")
            print(format_table(["file", "size"], [(name, human_bytes(size)) for name, size in plan]))
        else:
            print(f"uploaded: {push(Path(args.out), args.push_to_hub)}")
    return 0


def _request(args):
    """The MergeRequest the options ask for; an option that cannot be right fails here, in one line."""
    from harness.errors import ConfigError
    from harness.merge.run import MergeRequest

    weights, probes = _weights(args.weights), _probes(args.probes)
    # `not (... <= ...)` also refuses nan, which no comparison lets through
    if not 0 < args.density <= 1:
        raise ConfigError(f"--density {args.density}: give the fraction of weights kept, above 0 and at most 1")
    for flag, value in (("--tolerance", args.tolerance), ("--quantization-tolerance", args.quantization_tolerance)):
        if value is not None and not 0 <= value < float("inf"):
            raise ConfigError(f"{flag} {value}: give a finite largest logit difference of 0 or more")
    if args.dry_run and not args.push_to_hub:
        raise ConfigError("--dry-run: only meaningful with --push-to-hub REPO")
    return MergeRequest(
        base=args.base,
        adapters=args.adapter,
        out=args.out,
        weights=weights,
        method=args.method,
        density=args.density,
        dtype=args.dtype,
        dequantize=args.dequantize,
        overwrite=args.overwrite,
        tolerance=args.tolerance,
        quantization_tolerance=args.quantization_tolerance,
        probes=probes,
        run_dir=args.run,
    )


def _weights(text: str | None) -> list[float] | None:
    import math

    from harness.errors import ConfigError

    if not text:
        return None
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ConfigError(f"--weights {text}: expected numbers separated by commas, e.g. 0.7,0.3") from None
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"--weights {text}: every weight must be a finite number, e.g. 0.7,0.3")
    return weights


def _probes(path: str | None) -> list[str]:
    from pathlib import Path

    from harness.data.readers import split_lines
    from harness.errors import HarnessError

    if not path:
        return []
    try:
        probes = [line for line in split_lines(Path(path).read_text(encoding="utf-8")) if line.strip()]
    except OSError as exc:
        raise HarnessError(f"--probes {path}: cannot read ({exc.strerror}); give a text file") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"--probes {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if not probes:
        raise HarnessError(f"--probes {path}: no prompts in it; write one probe prompt per line")
    return probes


def _gaps_table(v: dict) -> str:
    from harness.runs.tables import format_table

    rows = []
    for label, key in (
        ("vs base + adapter, unmerged (merge error)", "export_vs_unmerged"),
        ("vs 4-bit base + adapter, as evaluated (quantization gap)", "export_vs_evaluated_4bit"),
    ):
        g = v[key]
        tol = "-" if g["tolerance"] is None else f"{g['tolerance']:g}"
        rows.append(
            (
                label,
                f"{g['max_abs_logit_diff']:.3g}",
                f"{g['mean_abs_logit_diff']:.3g}",
                f"{g['greedy_token_agreement']:.1%}",
                tol,
            )
        )
    return format_table(["export", "max |Δlogit|", "mean |Δlogit|", "greedy agree", "tolerance"], rows)


class _Print(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage())


@contextlib.contextmanager
def _shown_on_stdout(name: str):
    """The INFO lines of the library logger `name` on stdout while the command runs (they reach the
    command's log as well)."""
    logger, handler = logging.getLogger(name), _Print()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
