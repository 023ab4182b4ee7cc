"""`harness doctor`: what the environment detection sees and what it would pick."""

from __future__ import annotations

HELP = (
    "show the device, CUDA capability, bf16 support, GPU memory, bitsandbytes backend, versions, "
    "packages outside the tested set and chosen defaults"
)


def register(sub) -> None:
    p = sub.add_parser("doctor", help=HELP, description=HELP + ".")
    p.add_argument("--json", action="store_true", help="print the detection as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from harness.runs.tables import format_table
    from harness.runtime.console import human_bytes
    from harness.runtime.env import compute_dtype_name, detect, eval_batch_size, train_batch_size
    from harness.runtime.tested_set import LOCK_FILE, outside_tested_set

    env = detect()
    decided = {
        "compute_dtype": compute_dtype_name(env),
        "train_micro_batch": train_batch_size(env),
        "eval_batch": eval_batch_size(env),
        "optimizer": "paged_adamw_8bit" if env.device == "cuda" else "adamw_torch",
        "gradient_checkpointing": env.device == "cuda",
    }
    untested = outside_tested_set(LOCK_FILE)
    if args.json:
        drift = None if untested is None else [dict(zip(("name", "installed", "tested"), u)) for u in untested]
        print(json.dumps({"environment": env.to_dict(), "decisions": decided, "outside_tested_set": drift}, indent=2))
        return 0
    rows = [
        ("device", f"{env.device} ({env.device_name})"),
        ("CUDA capability", env.cuda_capability or "-"),
        ("bf16 supported", "yes" if env.bf16_supported else "no"),
        ("GPU memory", human_bytes(env.gpu_memory_bytes)),
        ("bitsandbytes backend", env.bitsandbytes_backend or "not available"),
        ("CPU cores", env.cpu_count),
        ("python", env.python),
    ]
    rows += [(name, version) for name, version in env.versions.items()]
    rows += _tested_set_rows(untested, LOCK_FILE)
    rows += [(f"→ {key}", value) for key, value in decided.items()]
    print(format_table(["harness doctor", ""], rows))
    return 0


def _tested_set_rows(untested: list[tuple[str, str, str]] | None, lock) -> list[tuple[str, str]]:
    """One row per installed package outside the lock: what a user checks first when a number moves."""
    if untested is None:
        return [("tested set", "unknown: no constraints/cpu.txt beside this install (not a source checkout)")]
    if not untested:
        return [("tested set", f"every installed package at its version in {lock.name}")]
    return [(f"untested {name}", f"{installed} (tested: {tested})") for name, installed, tested in untested]
