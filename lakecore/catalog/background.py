"""Index refreshes after a commit, in a background thread.

A commit that leaves many rows outside a table's scalar indices (see
``lakecore.tables.write.needs_reindex``) does not fold them in itself: it returns once its rows
are committed, and a refresher thread commits the index segments for them right after, as a
commit of its own under the same protocol (lease, fencing, catalog swap). Readers see the same
rows either way; until the refresh lands, Lance scans the unindexed fragments.

A process that wrote ends only after its refreshes have landed: the interpreter waits for them
when it shuts down, before it stops the thread pools they use (a killed process leaves nothing
half-done: a refresh is an ordinary commit, and the next commit that finds the rows unindexed
asks for it again). A refresh that fails is logged and dropped.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING

from lakecore.tables.write import Op, Reindex, needs_reindex

if TYPE_CHECKING:
    from lakecore.catalog.commit import Catalog, Snapshot

__all__ = ["IndexRefresher", "wait_all"]

log = logging.getLogger(__name__)

_live: weakref.WeakSet[IndexRefresher] = weakref.WeakSet()
_live_lock = threading.Lock()


class _NothingToDo(Exception):
    """Another writer refreshed the indices first."""


class IndexRefresher:
    """Folds unindexed rows into a catalog's tables' indices, one background commit at a time.

    Args:
        catalog: the catalog to commit through.
    """

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._future: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        with _live_lock:
            _live.add(self)

    def request(self, tables: Iterable[str]) -> None:
        """Refresh these tables' indices soon (requests made meanwhile share one commit).

        Never raises: it is called after a commit has landed. When no thread can be started
        (the interpreter is shutting down) the request is dropped with a warning; the next
        commit that finds the rows unindexed asks again.
        """
        tables = list(tables)
        try:
            with self._lock:
                self._pending.update(tables)
                if not self._pending or self._future is not None:
                    return
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="lakecore-index"
                    )
                self._future = self._pool.submit(self._run)
        except Exception:
            with self._lock:
                self._pending.clear()
            log.warning("lakecore: cannot refresh the indices of %s now", tables, exc_info=True)

    def _run(self) -> None:
        while True:
            with self._lock:
                tables = sorted(self._pending)
                self._pending.clear()
                if not tables:
                    self._future = None
                    return
            try:
                self._catalog.commit(build=_stale(tables, self._catalog), message="index refresh")
            except _NothingToDo:
                pass
            except Exception:  # an index refresh only costs speed: reads are right either way
                log.warning("lakecore: refreshing the indices of %s failed", tables, exc_info=True)

    def busy(self) -> bool:
        """True while a refresh is queued or running."""
        with self._lock:
            return self._future is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the refreshes requested so far; False if ``timeout`` passed first."""
        with self._lock:
            future = self._future
        if future is None:
            return True
        done, _ = wait_futures([future], timeout=timeout)
        return bool(done)

    def _after_fork(self) -> None:
        """In a forked child: forget the parent's thread (it does not exist here)."""
        self._lock = threading.Lock()
        self._pending = set()
        self._future = None
        self._pool = None


def _stale(tables: list[str], catalog: Catalog) -> Callable[[Snapshot], list[Op]]:
    """A commit's build step: a Reindex of each table that still needs one at its snapshot."""

    def build(snap: Snapshot) -> list[Op]:
        ops: list[Op] = [
            Reindex(name)
            for name in tables
            if name in snap.pins and needs_reindex(snap.dataset(name), catalog.store, name)
        ]
        if not ops:
            raise _NothingToDo
        return ops

    return build


def wait_all(timeout: float | None = None) -> bool:
    """Wait for every refresher of this process (tests: before their lakes are removed);
    False if ``timeout`` seconds passed first."""
    with _live_lock:
        refreshers = list(_live)
    deadline = None if timeout is None else time.monotonic() + timeout
    done = True
    for refresher in refreshers:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done = refresher.wait(left) and done
    return done


def _reset_after_fork() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for refresher in list(_live):
        refresher._after_fork()


if hasattr(os, "register_at_fork"):  # lakecore itself never forks (Lance is not fork-safe)
    os.register_at_fork(after_in_child=_reset_after_fork)


# At exit, Python stops accepting work in thread pools (which a refresh's commit uses) before
# it joins non-daemon threads, and runs plain ``atexit`` functions only after that. The hook
# ``concurrent.futures`` itself uses runs earlier, callbacks registered last first: registered
# after ``concurrent.futures.thread`` was imported (above), this one drains the refreshes while
# the pools still work.
getattr(threading, "_register_atexit", atexit.register)(wait_all)
