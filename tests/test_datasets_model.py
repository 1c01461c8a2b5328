"""Model-based: random builder sequences (with branching); each version reads its content."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakecore
from lakecore.errors import ValidationError

N = 12
step = st.tuples(
    st.sampled_from(["add", "remove", "split"]),
    st.lists(st.integers(0, N - 1), min_size=1, max_size=4, unique=True),
    st.sampled_from([None, "train", "val"]),
)
commit = st.tuples(st.integers(-1, 5), st.lists(step, min_size=1, max_size=4))


@pytest.fixture(scope="module")
def base(tmp_path_factory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("model")


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(commit, min_size=1, max_size=5))
def test_every_version_reads_its_recorded_content(base, commits):
    salt = uuid.uuid4().hex
    lake = lakecore.connect(base / f"lake-{salt}")
    assets = lake.assets.add_many([f"{salt}-{i}".encode() for i in range(N)], kind="blob")
    own = ["val" if i % 3 == 0 else "train" for i in range(N)]
    datums = lake.datums.add_many(
        [
            {"assets": {"image": a}, "split": s}
            for a, s in zip(assets["asset_id"].to_pylist(), own, strict=True)
        ]
    )
    ids = datums["datum_id"].to_pylist()
    expected: dict[str, dict[str, str | None]] = {}
    order: list[str] = []
    for n, (parent_pick, steps) in enumerate(commits):
        parent = None if parent_pick < 0 or not order else order[parent_pick % len(order)]
        state = dict(expected[parent]) if parent else {}
        builder = lake.datasets.builder("m", parent=parent)
        ok = True
        for kind, picks, split in steps:
            chosen = [ids[i] for i in picks]
            if kind == "add":
                builder.add(chosen, split=split)
                for i in picks:
                    state[ids[i]] = split or own[i]
            elif kind == "remove":
                builder.remove(chosen)
                ok &= all(c in state for c in chosen)
                for c in chosen:
                    state.pop(c, None)
            else:
                builder.set_split(chosen, split)
                ok &= all(c in state for c in chosen)
                for i in picks:
                    if ids[i] in state:
                        state[ids[i]] = split or own[i]
        version = f"v{n}"
        if not ok:
            with pytest.raises(ValidationError):
                builder.commit(version)
            continue
        handle = builder.commit(version)
        assert handle.record.datum_count == len(state)
        expected[version] = state
        order.append(version)
    fresh = lakecore.connect(base / f"lake-{salt}")
    for version, state in expected.items():
        handle = fresh.datasets.get("m", version)
        got = dict(zip(*handle.members().to_pydict().values(), strict=True))
        assert got == state, version
        counts: dict[str, int] = {}
        for s in state.values():
            counts[str(s)] = counts.get(str(s), 0) + 1
        assert handle.record.stats["splits"] == dict(sorted(counts.items())), version
        assert sorted(handle.to_arrow()["datum_id"].to_pylist()) == sorted(state)
