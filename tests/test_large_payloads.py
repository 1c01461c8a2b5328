"""A 1 GiB payload streams in and out with flat memory (measured in a spawned process)."""

from __future__ import annotations

import multiprocessing as mp

from _stream_worker import expected_sha, run

GIB = 1 << 30


def _measure(where, size):  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        child = ctx.Process(target=run, args=(where.uri, where.options, size, out))
        child.start()
        child.join(600)
        assert child.exitcode == 0
        return dict(out)


def test_one_gib_payload_streams_with_flat_memory(where):
    size = GIB if where.kind == "local" else GIB // 4  # the moto server keeps objects in RAM
    got = _measure(where, size)
    assert got["ref"]["size"] == size
    assert got["ref"]["key"].startswith("objects/")
    assert got["ref"]["sha256"] == got["sha"] == expected_sha(size)
    # peak RSS grows by a few chunks, not by the payload size
    assert got["put"] < 160, f"put grew RSS by {got['put']:.0f} MB"
    assert got["read"] < 160, f"read grew RSS by {got['read']:.0f} MB"
