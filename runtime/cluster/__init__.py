"""``kernelnet apply --engine ray``: a folder (or a file system URL) of images filtered over a Ray cluster, file by
file, resumable from its manifest (torch-free; needs the ``kernelnet[ray]`` extra).

- :mod:`~kernelnet.runtime.cluster.locations`: inputs and outputs as local paths or fsspec URLs, listed, fetched
  and written atomically one file at a time;
- :mod:`~kernelnet.runtime.cluster.manifest`: the run's record of finished outputs (append-only, locked);
- :mod:`~kernelnet.runtime.cluster.worker`: what one Ray actor does (holds the model, filters a chunk of files);
- :mod:`~kernelnet.runtime.cluster.ray_apply`: the driver (plan, skip what is done, hand chunks to actors, record);
- :mod:`~kernelnet.runtime.cluster.connection`: one cluster per command, interruptible waits, errors in one line;
- :mod:`~kernelnet.runtime.cluster.tasks`: functions mapped as Ray tasks (the shard sums of ``train --engine ray``).
"""
