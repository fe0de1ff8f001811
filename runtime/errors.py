"""Exceptions that the command line maps to exit codes (1 = a check failed, 2 = bad input)."""

from __future__ import annotations


class KernelnetError(Exception):
    """Bad input or usage: the CLI prints the message on one line and exits with code 2."""

    exit_code = 2


class CheckFailed(Exception):
    """A verification or threshold check failed: the CLI exits with code 1."""

    exit_code = 1
