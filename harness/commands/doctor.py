"""`harness doctor`: what the environment detection sees and what it would pick."""
from __future__ import annotations

HELP = "show the device, CUDA capability, bf16 support, GPU memory, bitsandbytes backend, versions and chosen defaults"


def register(sub) -> None:
    p = sub.add_parser("doctor", help=HELP, description=HELP + ".")
    p.add_argument("--json", action="store_true", help="print the detection as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from harness.env import compute_dtype_name, detect, eval_batch_size, train_batch_size
    from harness.tables import format_table, human_bytes

    env = detect()
    decided = {
        "compute_dtype": compute_dtype_name(env),
        "train_micro_batch": train_batch_size(env),
        "eval_batch": eval_batch_size(env),
        "optimizer": "paged_adamw_8bit" if env.device == "cuda" else "adamw_torch",
        "gradient_checkpointing": env.device == "cuda",
    }
    if args.json:
        print(json.dumps({"environment": env.to_dict(), "decisions": decided}, indent=2))
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
    rows += [(f"→ {key}", value) for key, value in decided.items()]
    print(format_table(["harness doctor", ""], rows))
    return 0
