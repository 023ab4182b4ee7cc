"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class HarnessError(Exception):
    """A problem with the user's input: a config, a file, a model reference."""


class ConfigError(HarnessError):
    """A config file or option that does not validate."""


class DataError(HarnessError):
    """A dataset that cannot be read or yields no usable examples."""


class ModelError(HarnessError):
    """A model or adapter reference that cannot be loaded or does not fit."""


def os_error_fix(exc: OSError) -> str:
    """What a user does about an OSError on one of their paths, from its errno."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return "free disk space (or write elsewhere) and run the same command again; finished work is kept"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a path you can write to"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return "a file stands where a folder is expected (or the other way round); move it or choose another path"
    if exc.errno == errno.ENAMETOOLONG:
        return "choose a shorter name"
    return "check the path"


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line for a message: its first line of text, else its type's name.

    Library errors can run to pages (CUDA, tokenizers); a one-line error keeps only what names the cause.
    """
    return _message(exc, limit) or type(exc).__name__


def describe(exc: BaseException, limit: int = 200) -> str:
    """An exception as "Type: first line", or just "Type" when it carries no message (a bare KeyError)."""
    message = _message(exc, limit)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _message(exc: BaseException, limit: int) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""
