"""Run a benchmark scenario: ``python -m bench <scenario> [--size N]``.

Scenarios:
  payloads   put N x 4 KiB and N/5 x 1 MiB vs plain files; 1,000 random gets vs plain files
  commit     one 3-table commit of N rows per table vs raw Lance appends
"""

from __future__ import annotations

import argparse
import sys

from bench._common import report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["payloads", "commit"])
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args(argv)
    if args.scenario == "payloads":
        from bench import payloads

        size = args.size or 10_000
        rows = [payloads.put(size, 4096, "4 KiB"), payloads.put(max(size // 5, 1), 1 << 20, "1 MiB"),
                *payloads.get(size)]
        notes = ["plain files: one file per payload in one folder, written with write_bytes",
                 "both sides end with os.sync(); cold = after dropping the page cache"]
    else:
        from bench import commit

        size = args.size or 1000
        rows = commit.commit(size)
        notes = ["lakecore: lease + catalog read + 3 fenced appends + catalog swap (atomic)",
                 "raw: lance.write_dataset(mode='append') x 3, not atomic across tables"]
    report(args.scenario, size, rows, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
