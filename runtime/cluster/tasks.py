"""Functions mapped over a Ray cluster as tasks, results in the order of their arguments (what
``kernelnet train --engine ray`` sums its shards with).

    >>> map_on_ray(shard_sums, [(shard, 3, 1, None) for shard in shards], address=None)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kernelnet.runtime.cluster.connection import first_line, ray_session, wait_any
from kernelnet.runtime.errors import KernelnetError


def map_on_ray(fn: Callable[..., Any], items: list[tuple[Any, ...]], address: str | None = None,
               workers: int | None = None) -> list[Any]:
    """``[fn(*item) for item in items]``, each call a Ray task of one CPU (retried where its worker dies), on the
    cluster at ``address`` (``None``: this process's connection, ``RAY_ADDRESS``, else a new local one on
    ``workers`` CPUs). A task's error comes back as a :class:`KernelnetError` of one line."""
    with ray_session(address, workers) as ray:
        try:
            remote = ray.remote(num_cpus=1, max_retries=3)(fn)
            index = {remote.remote(*item): i for i, item in enumerate(items)}
            results: dict[int, Any] = {}
            pending = list(index)
            while pending:  # in short waits: a Ctrl-C is not held up by a long shard
                done = wait_any(ray, pending)
                pending.remove(done)
                results[index[done]] = ray.get(done)
            return [results[i] for i in range(len(items))]
        except Exception as exc:
            if isinstance(exc, KernelnetError) or type(exc).__module__.startswith("ray"):
                raise KernelnetError(f"a Ray task failed: {first_line(exc)}") from exc
            raise
