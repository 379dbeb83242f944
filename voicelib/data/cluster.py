"""A Dask cluster for collection: connect to its scheduler and check that every worker sees the data root.

Synthesis and vocoding run through `voicelib.data.sources.synth.render` (joblib); given a scheduler address,
joblib's Dask backend sends the same calls to the cluster's workers. Workers write clip files straight into
the data root, so it must be storage every worker mounts at the same path (NFS, a cluster file system):
`shared_backend` checks that before any job is sent.
"""
from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Iterator

from voicelib.errors import DataError
from voicelib.files import atomic_write

log = logging.getLogger(__name__)

MARKER_DIR = "collect_state"
CONNECT_TIMEOUT = "20s"


def _sees(path: str, token: str) -> bool:
    """On a worker: True when `path` exists there and holds `token` (the driver wrote it)."""
    try:
        return Path(path).read_text(encoding="utf-8") == token
    except OSError:
        return False


def connect(address: str):
    """A dask.distributed Client of the scheduler at `address` (tcp://HOST:PORT); one-line error if unreachable."""
    from distributed import Client

    if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
        raise ValueError(f"dask scheduler {address!r} is not an address; "
                         "give tcp://HOST:PORT (as `dask scheduler` prints it)")
    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise DataError(f"dask scheduler {address}: cannot connect ({str(exc).splitlines()[0][:120]}); "
                        "start it with `dask scheduler` and check the address and firewall") from None


def check_shared(client, root: str | os.PathLike) -> int:
    """Write a marker under `root` here and check that every worker reads it back; return the number of workers."""

    root = Path(root).resolve()
    marker = root / MARKER_DIR / f"shared-{uuid.uuid4().hex}.txt"
    token = uuid.uuid4().hex
    with atomic_write(marker, "w", encoding="utf-8") as handle:
        handle.write(token)
    try:
        seen = client.run(_sees, str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    if not seen:
        raise DataError(f"dask scheduler {client.scheduler.address}: no workers; "
                        "start `dask worker ADDRESS` on each machine")
    blind = sorted(worker for worker, ok in seen.items() if not ok)
    if blind:
        raise DataError(f"data root {root} is not visible to dask worker(s) {', '.join(blind[:3])}: the data root must "
                        "be on storage every worker mounts at the same path (e.g. NFS)")
    return len(seen)


@contextlib.contextmanager
def shared_backend(address: str, root: str | os.PathLike) -> Iterator[int]:
    """Within: joblib runs on the Dask cluster at `address` (checked to see `root`); yields the worker count."""
    from joblib import parallel_config

    client = connect(address)
    try:
        workers = check_shared(client, root)
        log.info("dask cluster %s: %d workers see %s", address, workers, root)
        with parallel_config(backend="dask"):
            yield workers
    finally:
        client.close()
