"""Index refreshes after large writes run as background commits: the write returns first, the
rows are readable at once, and a refresh that fails costs nothing but speed."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import lakecore
from lakecore.catalog.commit import set_fault_hook
from lakecore.tables import write


def _unindexed(lake: lakecore.Lake, column: str = "split") -> int:
    ds = lake.snapshot().dataset("datums")
    return int(ds.stats.index_stats(f"{column}_idx")["num_unindexed_rows"])


def _rows(lake: lakecore.Lake, n: int, split: str = "train") -> list[dict[str, object]]:
    asset = lake.assets.add_many([b"x"], kind="blob")["asset_id"][0].as_py()
    return [{"assets": {"image": asset}, "split": split}] * n


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(write, "REINDEX_ROWS", 10)


@pytest.fixture
def hook() -> object:
    yield
    set_fault_hook(None)


def _in_refresher() -> bool:
    return threading.current_thread().name.startswith("lakecore-index")


def _hold_refresher_at(step: str) -> tuple[threading.Event, threading.Event]:
    """Make the background refresh stop at ``step``: (set once it is held, set to let it go)."""
    held, release = threading.Event(), threading.Event()

    def hold(at: str) -> None:
        if _in_refresher() and at == step:
            held.set()
            assert release.wait(60)

    set_fault_hook(hold)
    return held, release


def test_a_large_write_returns_before_its_index_refresh(lake, small_threshold, hook):
    """The refresh is held at its lease: the write has returned, its rows are readable and
    found by indexed lookups; once released, the refresh folds them into the indices."""
    held, release = _hold_refresher_at("lease_acquired")
    rows = lake.datums.add_many(_rows(lake, 40, "val"))
    assert held.wait(30), "no background refresh started"
    ids = rows["datum_id"].to_pylist()
    assert _unindexed(lake) == 40  # the write did not index its rows
    assert lake.datums.get_many(ids[::3])["datum_id"].to_pylist() == ids[::3]
    assert lake.datums.count("split = 'val'") == 40
    before = lake.snapshot().catalog_version
    release.set()
    lake.wait()
    assert _unindexed(lake) == 0
    assert lake.snapshot().catalog_version == before + 1  # one commit: the refresh
    assert lake.datums.count("split = 'val'") == 40


def test_a_failed_refresh_is_logged_and_the_next_write_asks_again(
    lake, small_threshold, hook, caplog
):
    def fail(step: str) -> None:
        if _in_refresher() and step.startswith("table_committed"):
            raise RuntimeError("injected: refresh dies after writing its index")

    set_fault_hook(fail)
    with caplog.at_level(logging.WARNING, logger="lakecore.catalog.background"):
        lake.datums.add_many(_rows(lake, 20))
        lake.wait()
    assert "refreshing the indices of ['datums'] failed" in caplog.text
    version = lake.snapshot().catalog_version
    assert _unindexed(lake) == 20  # the catalog never pinned the failed refresh
    assert lake.datums.count("split = 'train'") == 20
    set_fault_hook(None)
    lake.datums.add_many(_rows(lake, 20))
    lake.wait()
    assert _unindexed(lake) == 0
    assert lake.snapshot().catalog_version == version + 3  # asset, datums, refresh
    assert lake.datums.count("split = 'train'") == 40


def test_writes_during_a_refresh_are_kept(lake, small_threshold, hook):
    """A write that comes while the refresh runs waits for the lease; both land."""
    held, release = _hold_refresher_at("catalog_read")
    first = lake.datums.add_many(_rows(lake, 30))
    assert held.wait(30)
    done = threading.Event()
    second: list[object] = []

    def write_more() -> None:
        second.append(lake.datums.add_many(_rows(lake, 5, "test")))
        done.set()

    writer = threading.Thread(target=write_more)
    writer.start()
    assert not done.wait(0.5)  # the refresh holds the writer lease
    release.set()
    writer.join(60)
    lake.wait()
    assert lake.datums.count() == 35
    assert lake.datums.count("split = 'test'") == 5
    got = lake.datums.get_many(first["datum_id"].to_pylist())
    assert got.num_rows == 30
    assert _unindexed(lake) < 30  # the 30 rows were indexed (the 5 may wait: below threshold)


def test_without_background_index_the_write_indexes_itself(tmp_path, small_threshold):
    lake = lakecore.connect(tmp_path / "lake", background_index=False)
    lake.datums.add_many(_rows(lake, 25))
    assert not lake._catalog.refresher.busy()
    assert _unindexed(lake) == 0


def test_a_process_ends_after_its_refresh_has_landed(tmp_path):
    """The refresher thread is not a daemon: a script that writes and exits at once still
    leaves its rows indexed."""
    root = tmp_path / "lake"
    script = textwrap.dedent(
        f"""
        import lakecore
        from lakecore.tables import write
        write.REINDEX_ROWS = 10
        lake = lakecore.connect({str(root)!r})
        asset = lake.assets.add_many([b"x"], kind="blob")["asset_id"][0].as_py()
        lake.datums.add_many([{{"assets": {{"image": asset}}, "split": "train"}}] * 50)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=Path.cwd())
    lake = lakecore.connect(root)
    assert lake.datums.count() == 50
    assert _unindexed(lake) == 0


def test_a_refresh_that_cannot_start_does_not_fail_the_write(tmp_path, small_threshold, caplog):
    """The write has landed when the refresh is asked for (e.g. at interpreter shutdown, when
    no thread can start): it returns normally, and the next write asks again."""
    from concurrent.futures import ThreadPoolExecutor

    lake = lakecore.connect(tmp_path / "lake")
    stopped = ThreadPoolExecutor(1)
    stopped.shutdown()
    lake._catalog.refresher._pool = stopped  # submit() raises RuntimeError
    with caplog.at_level(logging.WARNING, logger="lakecore.catalog.background"):
        rows = lake.datums.add_many(_rows(lake, 30))
    assert rows.num_rows == 30 and lake.datums.count() == 30
    assert "cannot refresh the indices of ['datums'] now" in caplog.text
    assert _unindexed(lake) == 30
    lake._catalog.refresher._pool = None
    lake.datums.add_many(_rows(lake, 30))
    lake.wait()
    assert _unindexed(lake) == 0
