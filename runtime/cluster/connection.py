"""Connecting to a Ray cluster for one command: the extra's import, an unreachable address refused in one line,
one cluster per command, waits that a Ctrl-C interrupts, and Ray's errors as one line.

    >>> with ray_session("head:6379") as ray:          # doctest: +SKIP
    ...     done = wait_any(ray, refs)
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from kernelnet.runtime.errors import KernelnetError

POLL_SECONDS = 0.2
"""How long one wait for a result lasts: a Ctrl-C is seen within it."""


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise KernelnetError("--engine ray needs Ray: pip install 'kernelnet[ray]'") from exc
    return ray


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a ``host:port`` nothing answers on within ``timeout`` (Ray itself would retry for minutes)."""
    if "://" in address or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise KernelnetError(f"invalid Ray address {address!r}: use HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise KernelnetError(f"no Ray cluster answers at {address}: {exc.strerror or exc}") from exc


def connect(address: str | None, cpus: int | None) -> tuple[Any, bool]:
    """``(ray, started)``: the Ray module connected to the cluster at ``address`` (``None``: ``RAY_ADDRESS``, else
    a new local one with ``cpus`` CPUs); ``started`` is False when this process was connected already."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    where = address or os.environ.get("RAY_ADDRESS")
    try:
        if where:
            check_reachable(where)
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        what = f"cannot connect to Ray at {where}" if where else "cannot start a local Ray cluster"
        raise KernelnetError(f"{what}: {first_line(exc)}") from exc
    return ray, True


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None) -> Iterator[Any]:
    """Connected for a whole command (the calls inside share the cluster); a local cluster it started is shut down
    at the end, and with it the actors this driver owns."""
    ray, started = connect(address, cpus)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def wait_any(ray: Any, refs: list[Any]) -> Any:
    """The first of ``refs`` to finish, waiting in short slices so that SIGINT is handled between them."""
    while True:
        done, _ = ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
        if done:
            return done[0]


def first_line(exc: BaseException) -> str:
    """One line for a Ray error: the task's own exception where Ray kept it, else its message's last error line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and str(cause).strip():
        text = str(cause).strip().splitlines()[0]
        return text if isinstance(cause, KernelnetError) else f"{type(cause).__name__}: {text}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else type(exc).__name__)
