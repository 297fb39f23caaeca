"""Exception types that map onto the command line's exit codes.

``FsvInputError`` (exit 2) is bad usage or bad input: a manifest, a store, a file or an option that
the user must fix; its message names the offending file or line and what to do. ``FsvJobError``
(exit 1) is a job that ran and failed.
"""

from __future__ import annotations

import errno


class FsvError(Exception):
    """Base class of fsv's errors; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class FsvInputError(FsvError, ValueError):
    """Bad usage or bad input (exit code 2)."""

    exit_code = 2


class FsvJobError(FsvError, RuntimeError):
    """A job that ran and failed (exit code 1)."""

    exit_code = 1


class SpecMismatchError(FsvInputError):
    """Features of one feature spec were offered to a store built for another."""


class StoreCorruptError(FsvInputError):
    """A feature store whose files are missing or do not match their committed checksums: the
    message names the store, part, video, field and file, and what to do (exit code 2)."""


def storage_error(e: OSError, doing: str) -> FsvError:
    """One line for an operating-system error while ``doing`` something (``"writing store X"``):
    a full disk or quota is a failed job (free space, then run the same command again: it goes on
    from the last commit); a path the user may not write or read is an input error."""
    where = f" ({e.filename})" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return FsvJobError(
            f"{doing}: no space left on the device{where}. What was committed before is intact; "
            "free space and run the same command again: it goes on from the last commit"
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the file system is read-only" if e.errno == errno.EROFS else "permission denied"
        return FsvInputError(f"{doing}: {why}{where}; choose a path you can write (or ask its owner)")
    return FsvJobError(f"{doing}: {e.strerror or e}{where}")
