"""Lake and mount URIs: parse, normalise, join.

Supported forms: a local path (relative or absolute), ``file://``, ``s3://``, ``gs://``,
``az://`` / ``abfs://`` and ``memory://name``. ``memory://name`` is a RAM-backed folder (under
``/dev/shm`` where it exists) private to this process and removed when it exits: Lance's own
``memory://`` store does not survive between two opens, so it cannot hold a lake.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lakecore.errors import ConfigError

__all__ = ["REMOTE_SCHEMES", "LakeUri", "join", "parse"]

REMOTE_SCHEMES = frozenset({"s3", "gs", "az", "abfs"})
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")
_MEMORY_ROOT: str | None = None


@dataclass(frozen=True)
class LakeUri:
    """A normalised storage location.

    Attributes:
        scheme: ``file`` for local folders (memory lakes included), else the object-store scheme.
        uri: the URI to hand to Lance and fsspec (an absolute path for local folders).
        given: the URI as the user wrote it (``memory://x`` stays ``memory://x`` here).
    """

    scheme: str
    uri: str
    given: str

    @property
    def is_local(self) -> bool:
        """True for local folders (including ``memory://``)."""
        return self.scheme == "file"

    def child(self, *parts: str) -> LakeUri:
        """Return the location of ``parts`` below this one."""
        return LakeUri(self.scheme, join(self.uri, *parts), join(self.given, *parts))


def _memory_root() -> str:
    global _MEMORY_ROOT
    if _MEMORY_ROOT is None:
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _MEMORY_ROOT = tempfile.mkdtemp(prefix=f"lakecore-mem-{os.getpid()}-", dir=base)
        atexit.register(shutil.rmtree, _MEMORY_ROOT, ignore_errors=True)
    return _MEMORY_ROOT


def parse(uri: str | os.PathLike[str]) -> LakeUri:
    """Parse a user-given location into a :class:`LakeUri`.

    Raises:
        ConfigError: the URI is not a str or path, is empty, or uses a scheme lakecore does not
            support.
    """
    if not isinstance(uri, (str, os.PathLike)):
        raise ConfigError(
            f"a lake URI must be a str or a path, got type {type(uri).__name__} ({uri!r}): pass a "
            "folder path, s3://bucket/prefix or memory://name",
            field="uri",
        )
    raw = os.fspath(uri)
    if not isinstance(raw, str):
        raise ConfigError(
            f"a lake URI must be text, got the bytes path {raw!r}: pass it as a str", field="uri"
        )
    text = raw.strip()
    if not text:
        raise ConfigError("empty lake URI: pass a folder path, s3://bucket/prefix or memory://name")
    match = _SCHEME.match(text)
    if match is None:
        return LakeUri("file", str(Path(text).expanduser().resolve()), text)
    scheme, rest = match.group(1).lower(), match.group(2).rstrip("/")
    if scheme == "file":
        return LakeUri("file", str(Path(rest or "/").resolve()), text)
    if scheme == "memory":
        name = rest.strip("/")
        if not name or not re.fullmatch(r"[A-Za-z0-9_.\-/]+", name) or ".." in name:
            raise ConfigError(f"bad memory URI {text!r}: use memory://<name> with [A-Za-z0-9_.-/]")
        return LakeUri("file", os.path.join(_memory_root(), name), text)
    if scheme in REMOTE_SCHEMES:
        if not rest or rest.startswith("/"):
            raise ConfigError(f"bad URI {text!r}: expected {scheme}://bucket[/prefix]")
        return LakeUri(scheme, f"{scheme}://{rest}", text)
    raise ConfigError(
        f"unsupported URI scheme {scheme!r} in {text!r}: use a local path, file://, s3://, gs://, "
        "az:// or memory://"
    )


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI or path with single slashes."""
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out
