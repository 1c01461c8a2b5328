"""Child process for the large-payload test: put and read back 1 GiB, report peak RSS growth."""

from __future__ import annotations

import hashlib
import resource

import lakecore

CHUNK = 1 << 20


class Generated:
    """A readable stream of ``size`` deterministic bytes, never held in memory at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0
        self.block = hashlib.sha256(b"seed").digest() * (CHUNK // 32)

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), CHUNK - (self.pos + len(out)) % CHUNK)
            start = (self.pos + len(out)) % CHUNK
            out += self.block[start : start + take]
        self.pos += n
        return bytes(out)


def expected_sha(size: int) -> str:
    digest, stream = hashlib.sha256(), Generated(size)
    while chunk := stream.read(8 * CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(uri: str, options: dict[str, str] | None, size: int, out: dict) -> None:  # type: ignore[type-arg]
    lake = lakecore.connect(uri, storage_options=options)
    lake.objects.put(b"warm up")
    base = rss_mb()
    ref = lake.objects.put(Generated(size))
    after_put = rss_mb()
    digest = hashlib.sha256()
    with lake.objects.open(ref) as f:
        while chunk := f.read(8 * CHUNK):
            digest.update(chunk)
    out.update(
        ref=ref.model_dump(),
        base=base,
        put=after_put - base,
        read=rss_mb() - base,
        sha=digest.hexdigest(),
    )
