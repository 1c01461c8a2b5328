"""Storage options: one flat ``dict[str, str]`` per lake, translated once per consumer.

The canonical keys are Lance's object-store keys (they are passed to Lance unchanged). The
same dict is translated here, and only here, into fsspec/s3fs keyword arguments.

Common keys:

========================== =====================================================
``aws_access_key_id``      S3 access key (else the usual AWS environment/config)
``aws_secret_access_key``  S3 secret key
``aws_session_token``      S3 session token
``region``                 S3 region (``aws_region`` is accepted too)
``endpoint``               S3-compatible endpoint URL (MinIO, moto, …)
``allow_http``             ``"true"`` to allow a plain-HTTP endpoint
``google_service_account`` GCS service-account JSON path
``account_name``           Azure storage account
``account_key``            Azure storage key
========================== =====================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fsspec

from lakecore.errors import ConfigError, NotInstalledError
from lakecore.storage.uri import LakeUri

__all__ = ["StorageOptions", "check_options", "filesystem", "lance_options"]

StorageOptions = Mapping[str, str]

_S3_KEYS = {
    "aws_access_key_id": "key",
    "access_key_id": "key",
    "aws_secret_access_key": "secret",
    "secret_access_key": "secret",
    "aws_session_token": "token",
    "session_token": "token",
}


def check_options(options: StorageOptions | None) -> dict[str, str]:
    """Return the storage options as a plain dict after checking they are ``str -> str``.

    Raises:
        ConfigError: ``options`` is not a mapping, or a key or value is not a str.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(
            f"storage_options must be a dict of str -> str (e.g. {{'region': 'us-east-1'}}), "
            f"got type {type(options).__name__}",
            field="storage_options",
        )
    opts = dict(options)
    for key, value in opts.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"storage option {key!r}={value!r} must be str -> str (e.g. allow_http='true')",
                field="storage_options",
            )
    return opts


def lance_options(options: StorageOptions | None) -> dict[str, str] | None:
    """Return the options to pass to Lance (``None`` when empty)."""
    opts = check_options(options)
    return opts or None


def _s3_kwargs(opts: dict[str, str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for key, value in opts.items():
        if key in _S3_KEYS:
            kwargs[_S3_KEYS[key]] = value
        elif key in ("region", "aws_region"):
            client["region_name"] = value
        elif key in ("endpoint", "aws_endpoint", "endpoint_url"):
            kwargs["endpoint_url"] = value
    if client:
        kwargs["client_kwargs"] = client
    return kwargs


def filesystem(location: LakeUri, options: StorageOptions | None) -> fsspec.AbstractFileSystem:
    """Return the fsspec filesystem for ``location`` configured from the storage options.

    Raises:
        ConfigError: an option has the wrong type.
        NotInstalledError: the scheme's fsspec backend (gcsfs, adlfs) is not installed.
    """
    opts = check_options(options)
    if location.is_local:
        return fsspec.filesystem("file", auto_mkdir=True)
    if location.scheme == "s3":
        return fsspec.filesystem("s3", **_s3_kwargs(opts))
    if location.scheme == "gs":
        kwargs = (
            {"token": opts["google_service_account"]} if "google_service_account" in opts else {}
        )
        return _optional("gs", "gcsfs", kwargs)
    kwargs = {k: opts[k] for k in ("account_name", "account_key") if k in opts}
    return _optional(location.scheme, "adlfs", kwargs)


def _optional(protocol: str, package: str, kwargs: dict[str, Any]) -> fsspec.AbstractFileSystem:
    try:
        return fsspec.filesystem(protocol, **kwargs)
    except ImportError as exc:
        raise NotInstalledError(
            f"{protocol}:// needs the {package} package: pip install {package}"
        ) from exc
