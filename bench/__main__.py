"""Run a benchmark scenario: ``python -m bench <scenario> [--size N]``.

Scenarios:
  payloads   put N x 4 KiB and N/5 x 1 MiB vs plain files; 1,000 random gets vs plain files
  commit     one 3-table commit of N rows per table vs raw Lance appends
  ingest     N assets (4 KiB) + N datums x 5 boxes vs the anchor system and raw Lance;
             annotations.add of 100k and 1M records vs raw Lance
  versions   commit of an N-datum version, a 1% child, to_arrow vs raw scan, streaming memory
  importers  the COCO sample and an N-image VOC-style tree vs the anchor system's importer
  sql        N annotation records over N/10 datums: lake SQL vs DuckDB on Parquet and native
  loaders    N x 4 KiB samples through a 2-worker DataLoader vs Lance's loader and HF datasets;
             100 KB payload streaming vs plain files; peak RSS
"""

from __future__ import annotations

import argparse
import sys

from bench._common import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenario",
        choices=["payloads", "commit", "ingest", "versions", "importers", "loaders", "sql"],
    )
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args(argv)
    if args.scenario == "payloads":
        from bench import payloads

        size = args.size or 10_000
        rows = [
            payloads.put(size, 4096, "4 KiB"),
            payloads.put(max(size // 5, 1), 1 << 20, "1 MiB"),
            *payloads.get(size),
        ]
        notes = [
            "plain files: one file per payload in one folder, written with write_bytes",
            "both sides end with os.sync(); cold = after dropping the page cache",
        ]
    elif args.scenario == "ingest":
        from bench import ingest

        size = args.size or 10_000
        rows = [
            *ingest.ingest(size),
            *ingest.records_only(100_000),
            *ingest.records_only(1_000_000),
        ]
        notes = [
            "anchor: 8.5 ms per asset + 17.6 ms per datum with 5 boxes (measured live)",
            "raw Lance: write_dataset of the same Arrow rows and a blob table of payloads",
        ]
    elif args.scenario == "importers":
        from bench import importers

        size = args.size or 10_000
        rows = importers.run(size)
        notes = ["anchor: its VOC importer took 0.42 s for 6 images (14.3 images/s), measured"]
    elif args.scenario == "loaders":
        from bench import loaders

        size = args.size or 50_000
        rows = loaders.run(size)
        notes = list(loaders.NOTES)
    elif args.scenario == "versions":
        from bench import versions

        size = args.size or 100_000
        rows = versions.run(size)
        notes = [
            "anchor: 0.8 ms per manifest entry to create a version, 8 ms per datum "
            "to resolve one (measured live)"
        ]
    elif args.scenario == "sql":
        from bench import sql

        size = args.size or 1_000_000
        rows = sql.run(size)
        notes = list(sql.NOTES)
    else:
        from bench import commit

        size = args.size or 1000
        rows = commit.commit(size)
        notes = [
            "lakecore: lease + catalog read + 3 fenced appends + catalog swap (atomic)",
            "raw: lance.write_dataset(mode='append') x 3, not atomic across tables",
        ]
    report(args.scenario, size, rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
