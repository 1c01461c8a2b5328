"""The writer lease: numbered generation objects created only if absent.

The lease is for throughput, not safety: the commit protocol (``lakecore.catalog``) stays
correct without it, but on object stores writers that do not take turns keep undoing each
other. A lease generation is an object ``<prefix>/<gen:012d>`` holding JSON
``{"state": "held"|"free", "owner": ..., "expires": <unix time>}``. The current lease is the
highest generation; whoever creates generation ``n + 1`` (create-if-absent: ``O_EXCL`` locally,
``If-None-Match: *`` on S3) when ``n`` is free or expired holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import time
import uuid
from types import TracebackType

import fsspec

from lakecore.errors import LeaseTimeoutError
from lakecore.storage._errors import storage_errors
from lakecore.storage.uri import join

__all__ = ["Lease"]

_KEEP_GENERATIONS = 8


class Lease:
    """A writer lease on one lake.

    Args:
        fs: the lake's filesystem.
        prefix: the folder holding the generations (``<lake>/_lease``).
        ttl: seconds after which a held lease that was not renewed may be taken over.
        poll: base polling interval in seconds (jittered).
    """

    def __init__(
        self, fs: fsspec.AbstractFileSystem, prefix: str, *, ttl: float = 30.0, poll: float = 0.15
    ) -> None:
        self._fs = fs
        self._prefix = prefix
        self.ttl = ttl
        self.poll = poll
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.generation: int | None = None

    # -- internals ----------------------------------------------------------------------------
    def _path(self, gen: int) -> str:
        return join(self._prefix, f"{gen:012d}")

    def _generations(self) -> list[int]:
        try:
            names = self._fs.ls(self._prefix, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        gens = []
        for name in names:
            base = name.rstrip("/").rsplit("/", 1)[-1]
            if base.isdigit():
                gens.append(int(base))
        return sorted(gens)

    def _state(self, gen: int) -> tuple[str, float]:
        try:
            doc = json.loads(self._fs.cat_file(self._path(gen)))
            return str(doc["state"]), float(doc["expires"])
        except (OSError, ValueError, KeyError, TypeError):
            return "free", 0.0  # torn or vanished: treat as expired

    def _write(self, gen: int, state: str, *, create: bool) -> None:
        body = json.dumps(
            {"state": state, "owner": self.owner, "expires": time.time() + self.ttl}
        ).encode()
        self._fs.pipe_file(self._path(gen), body, mode="create" if create else "overwrite")

    # -- public -------------------------------------------------------------------------------
    def acquire(self, timeout: float = 120.0) -> int:
        """Take the lease, waiting up to ``timeout`` seconds.

        Returns:
            The generation now held.

        Raises:
            LeaseTimeoutError: another writer held it for the whole timeout.
        """
        deadline = time.monotonic() + timeout
        with storage_errors("taking the writer lease"):
            while True:
                gens = self._generations()
                current = gens[-1] if gens else 0
                state, expires = self._state(current) if gens else ("free", 0.0)
                if state == "free" or expires < time.time():
                    try:
                        self._write(current + 1, "held", create=True)
                    except FileExistsError:
                        pass  # another writer won this generation; look again
                    else:
                        self.generation = current + 1
                        self._prune(gens)
                        return current + 1
                if time.monotonic() > deadline:
                    raise LeaseTimeoutError(
                        f"the writer lease is held by another writer (generation {current}); "
                        f"gave up after {timeout:.0f} s",
                        generation=current,
                    )
                time.sleep(self.poll * (0.5 + random.random()))

    def renew(self) -> None:
        """Push the expiry of the held lease ``ttl`` seconds ahead."""
        if self.generation is not None:
            with storage_errors("renewing the writer lease"):
                self._write(self.generation, "held", create=False)

    def release(self) -> None:
        """Free the held lease (no-op when none is held)."""
        if self.generation is None:
            return
        gen, self.generation = self.generation, None
        with storage_errors("releasing the writer lease"):
            self._write(gen, "free", create=False)

    def _prune(self, gens: list[int]) -> None:
        old = gens[:-_KEEP_GENERATIONS]
        if old:
            with contextlib.suppress(OSError):  # pruning is best effort
                self._fs.rm([self._path(g) for g in old])

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
