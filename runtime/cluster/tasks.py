"""Functions mapped over a Ray cluster as tasks, results in the order of their arguments (what
``kernelnet train --engine ray`` sums its shards with).

    >>> map_on_ray(shard_sums, [(shard, 3, 1, None) for shard in shards], address=None)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from kernelnet.runtime.errors import KernelnetError


def map_on_ray(fn: Callable[..., Any], items: list[tuple[Any, ...]], address: str | None = None,
               workers: int | None = None) -> list[Any]:
    """``[fn(*item) for item in items]``, each call a Ray task of one CPU (retried where its worker dies), on the
    cluster at ``address`` (``None``: ``RAY_ADDRESS``, else a new local one on ``workers`` CPUs). A task's
    :class:`KernelnetError` comes back as one (its first line)."""
    from kernelnet.runtime.cluster.ray_apply import connect, first_line

    ray, started = connect(address, workers)
    try:
        remote = ray.remote(num_cpus=1, max_retries=3)(fn)
        refs = [remote.remote(*item) for item in items]
        return list(ray.get(refs))
    except Exception as exc:
        if isinstance(exc, KernelnetError) or type(exc).__module__.startswith("ray"):
            raise KernelnetError(f"a Ray task failed: {first_line(exc)}") from exc
        raise
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """Connected to one cluster for a whole command (its :func:`map_on_ray` calls share it); a local cluster it
    started is shut down at the end."""
    from kernelnet.runtime.cluster.ray_apply import connect

    ray, started = connect(address, workers)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
