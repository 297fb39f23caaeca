"""Exception types that map onto the command line's exit codes.

``FsvInputError`` (exit 2) is bad usage or bad input: a manifest, a store, a file or an option that
the user must fix; its message names the offending file or line and what to do. ``FsvJobError``
(exit 1) is a job that ran and failed.
"""

from __future__ import annotations


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
