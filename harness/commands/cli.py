"""`harness` entry point: parse, validate, call. The work lives in modules a test can call."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import traceback

from harness import __version__
from harness.errors import HarnessError, describe

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def run() -> None:
    """The `harness` executable: `main`, then exit with its code.

    Once the command has returned, its work is on disk, so Ctrl-C is ignored while the interpreter
    tears down (the default handler it restores would kill the process by the signal, exit -2, after
    the command's last line). After an interrupted command the process ends at once: a
    KeyboardInterrupt that passed through an extension's embedded Python code leaves the interpreter
    marked as killed by Ctrl-C, and at exit it would re-send SIGINT to itself (exit -2, not 130)."""
    try:
        code = main()
    except KeyboardInterrupt:  # in the instant between the command's own handler and here
        code = EXIT_INTERRUPTED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for --num-processes, which re-launches it
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    _quiet_libraries()
    from harness.runtime.console import divert_library_output
    from harness.runtime.distributed import leave_process_group, rank_label, wants_relaunch
    from harness.runtime.env import block_hub_kernels

    if wants_relaunch(args):
        return relaunch(args.argv, args.num_processes)
    # Under `accelerate launch` an error names its rank; the launcher then stops the other ranks.
    where = f" (on {rank_label()})" if rank_label() else ""
    log = "the command's log"
    try:
        with divert_library_output(args.command, verbose=args.verbose):
            block_hub_kernels()
            try:
                return int(args.func(args) or 0)
            except Exception as exc:
                if not isinstance(exc, (HarnessError, OSError)):
                    traceback.print_exc()  # stderr is diverted: this lands in the command's log
                    log = _log_name(args.command)
                raise
    except HarnessError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"harness {args.command}: error{where}: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a file or folder the command reads or writes: the user's to fix
        if args.debug:
            traceback.print_exc()
        print(f"harness {args.command}: error{where}: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        # A bug in harness, not the user's input: one line, the traceback kept in the command's log.
        if args.debug or where:
            traceback.print_exc()
        print(
            f"harness {args.command}: error{where}: {describe(exc, 300)} (an internal "
            f"error; the traceback is in {log}, or re-run with --debug to see it)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; finished work is on disk", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        leave_process_group()


def relaunch(argv: list[str], num_processes: int) -> int:
    """Run `harness ARGV` (without --num-processes) in `num_processes` processes through accelerate."""
    from harness.runtime.distributed import launch_command, strip_option

    argv = strip_option(argv, "--num-processes")
    print(
        f"harness: launching {num_processes} processes: accelerate launch --multi_gpu --num_processes "
        f"{num_processes} -m harness {' '.join(argv)}",
        file=sys.stderr,
        flush=True,
    )
    code = subprocess.run(launch_command(argv, num_processes)).returncode
    if code != 0:
        print(
            f"harness: accelerate launch ended with exit code {code}; the failing rank's error is the "
            f"'(on rank R of {num_processes})' line above. Records already written stay; the same command resumes.",
            file=sys.stderr,
            flush=True,
        )
    return code


def describe_os_error(exc: OSError) -> str:
    """'PATH: what went wrong; what to do' for an OSError that reached the command line."""
    from harness.errors import os_error_fix

    path = exc.filename if exc.filename is not None else "a file"
    return f"{path}: {exc.strerror or type(exc).__name__}; {os_error_fix(exc)}"


def _log_name(command: str) -> str:
    from harness.runtime.console import log_file
    from harness.runtime.files import cache_root

    return str(log_file() or cache_root() / "logs" / f"{command}.log")


def build_parser() -> argparse.ArgumentParser:
    from harness.commands import chat, doctor, eval, generate, merge, report, rescore, train

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Fine-tune an open LLM with QLoRA and prove, with numbers, that it got better.",
        epilog="Run `harness COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (train, eval, generate, chat, report, rescore, merge, doctor):
        module.register(sub)
    for name in list(sub.choices):
        sub.choices[name].add_argument("--debug", action="store_true", help="show the traceback of an error")
        sub.choices[name].add_argument(
            "--verbose",
            action="store_true",
            help="show the libraries' own messages (transformers, peft, TRL, ...) on the terminal too; "
            "they always go to the command's log file",
        )
    return parser


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


if __name__ == "__main__":
    sys.exit(main())
