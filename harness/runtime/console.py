"""What reaches the terminal: harness's own lines, progress bars and tables.

Everything the libraries underneath write to stderr (transformers, peft, TRL, bitsandbytes,
accelerate, datasets, huggingface_hub, kernels: loggers, warnings, progress bars) goes to a log
file beside the command's work instead (`keep_log_in`), and to the terminal as well under
`--verbose`. A command that names no log file leaves what it caught in the cache's `logs/`.

The libraries reach stderr in many ways (a handler bound at import, `warnings`, tqdm) and any
release may add one, so the stream itself is diverted while a command runs, rather than each
library's settings turned down one by one; harness writes its own stderr lines to `terminal()`.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from harness.runtime.files import cache_root

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Read by huggingface_hub, transformers and datasets when they are imported: their bars would only
# fill the log with carriage returns. --verbose keeps them (on the terminal, beside harness's).
PROGRESS_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


class _Diverter(io.TextIOBase):
    """Stands in for sys.stderr. While a command runs its text goes to the command's log (held in
    memory until a file is named), and to the terminal too when echoing; otherwise to the terminal.
    One object for the whole process, because libraries keep the stream they found at import."""

    def __init__(self) -> None:
        self.terminal = sys.stderr
        self.log: io.TextIOBase | None = None
        self.echo = False

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        if self.log is None:
            return self.terminal.write(text)
        if _pending is not None:
            _open_pending()
        try:
            self.log.write(text)
        except OSError:  # a full disk: the libraries' chatter is dropped, the command goes on
            self.log = io.StringIO()
        if self.echo:
            self.terminal.write(text)
        return len(text)

    def flush(self) -> None:
        if self.log is not None:
            try:
                self.log.flush()
            except OSError:
                self.log = io.StringIO()
        self.terminal.flush()


_DIVERTER = _Diverter()
_held = io.StringIO()
_file: Path | None = None
_pending: Path | None = None  # the log file named, until its folder exists


def terminal():
    """The stream harness's own stderr lines and bars go to: the terminal, also while diverting."""
    return _DIVERTER.terminal if sys.stderr is _DIVERTER else sys.stderr


def log_file() -> Path | None:
    """Where this command's library output is kept, once a file is named."""
    return _file


def keep_log_in(path: Path) -> None:
    """Append this command's library output to `path`, with what was caught so far, from when its
    folder exists: a command that fails before making its output folder does not make it for a log.
    Outside a diverted command (harness used as a library) there is nothing to keep: no-op."""
    global _pending
    if _DIVERTER.log is None or _file is not None:
        return
    _pending = path
    _open_pending()


def close_log_file() -> None:
    """Close the command's log file, so that the next `keep_log_in` opens another: a command with several
    outputs (an eval of several suites) keeps each one's lines beside it."""
    global _held, _file
    if _file is None:
        return
    with suppress(OSError):
        _DIVERTER.log.close()
    header = _held.getvalue().partition("\n")[0]  # the command's "=== harness ..." line heads each file
    _held = io.StringIO(header + "\n")
    _held.seek(0, io.SEEK_END)
    _DIVERTER.log, _file = _held, None


def _open_pending() -> None:
    global _file, _pending
    if _pending is None or not _pending.parent.is_dir():
        return
    try:
        stream = open(_pending, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    except OSError:  # an unwritable disk: keep holding the text in memory, the command goes on
        _pending = None
        return
    try:
        stream.write(_held.getvalue())
        stream.flush()
    except OSError:  # a full disk: likewise
        _pending = None
        stream = io.StringIO()
    _DIVERTER.log, _file, _pending = stream, _pending, None


@contextmanager
def divert_library_output(command: str, verbose: bool = False):
    """Run a command with the libraries' stderr output in its log; see the module's docstring."""
    global _held, _file, _pending
    if sys.stderr is _DIVERTER:  # a command run from inside another (tests): the outer one diverts
        yield
        return
    if not verbose:
        for switch in PROGRESS_BAR_SWITCHES:
            os.environ.setdefault(switch, "1")
    _held, _file, _pending = io.StringIO(), None, None
    _held.write(f"=== harness {command} (pid {os.getpid()}) {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
    _DIVERTER.terminal, _DIVERTER.log, _DIVERTER.echo = sys.stderr, _held, verbose
    handler = _route_logging()
    sys.stderr = _DIVERTER
    try:
        yield
    finally:
        sys.stderr = _DIVERTER.terminal
        logging.getLogger().removeHandler(handler)
        logging.captureWarnings(False)
        _close_log(command)


def _route_logging() -> logging.Handler:
    """Library loggers and warnings to the diverted stream, through one formatted root handler."""
    handler = logging.StreamHandler(_DIVERTER)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    logging.getLogger("harness").setLevel(logging.INFO)  # harness's own details (each log entry of training)
    logging.captureWarnings(True)
    # Handlers a library bound to the terminal before this command (an import before `main`) follow too.
    for logger in [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]:
        for existing in logger.handlers:
            if _writes_to_terminal(existing):
                try:
                    existing.setStream(_DIVERTER)
                except AttributeError:  # logging's last resort reads sys.stderr at each record anyway
                    pass
    return handler


def _writes_to_terminal(handler: logging.Handler) -> bool:
    """A stream handler on stderr, whichever object stood for stderr when it was made (not a file,
    not stdout, not an in-memory capture such as pytest's)."""
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and handler.stream not in (sys.stdout, sys.__stdout__, _DIVERTER)
        and not isinstance(handler.stream, io.StringIO)
    )


def _close_log(command: str) -> None:
    global _file, _pending
    _open_pending()
    log, _DIVERTER.log, _pending = _DIVERTER.log, None, None
    if _file is not None:
        try:
            log.close()
        except OSError:
            pass
    elif _held.getvalue().count("\n") > 1:  # more than the header: keep it where it can be found
        _append_to_fallback(command, _held.getvalue())
    _file = None


def _append_to_fallback(command: str, text: str) -> None:

    path = cache_root() / "logs" / f"{command}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One file per command, kept short: the newest runs matter.
        if path.is_file() and path.stat().st_size > 4 * 2**20:
            path.unlink()
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as out:
            out.write(text)
    except OSError:
        pass  # an unwritable cache must not turn a finished command into a failed one


def quiet(*_args, **_kwargs) -> None:
    """A `log` that shows nothing: what the other ranks of a world are given, rank 0 speaking for them."""


def human_bytes(n: int | None) -> str:
    """A size for people: `1.5 GiB`, `-` when unknown."""
    if not n:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
