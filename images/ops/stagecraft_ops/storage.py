"""The backups bucket through google-cloud-storage.

Credentials: the service account key file named by ``credentials_file``, else application
default credentials; with ``STORAGE_EMULATOR_HOST`` set the client talks to that emulator instead.
Uploads never overwrite (``if_generation_match=0``) and nothing is ever deleted: retention is the
bucket's lifecycle rule.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.cloud import storage
from google.resumable_media import common as media_common

from stagecraft_ops.errors import OperationError, UsageError
from stagecraft_ops.settings import Settings

T = TypeVar("T")
# Resumable uploads move 32 MiB per request: large enough to be fast, small enough to retry.
CHUNK_BYTES = 32 * 1024 * 1024
TIMEOUT_S = 300


class Bucket:
    """The one bucket a stack's backups live in (or, for a seed job, its uploads bucket)."""

    def __init__(self, settings: Settings, name: str | None = None) -> None:
        """Loads the credentials now (no request yet), so a bad key file shows before any work."""
        self.name = name or settings.bucket
        self._bucket: storage.Bucket = _client(settings).bucket(self.name)

    def _handle(self) -> storage.Bucket:
        return self._bucket

    def url(self, name: str) -> str:
        return f"gs://{self.name}/{name}"

    def _call(self, name: str, action: Callable[[], T]) -> T:
        try:
            return action()
        except api_exceptions.NotFound:
            raise OperationError(f"{self.url(name)}: not found") from None
        except api_exceptions.PreconditionFailed:
            raise OperationError(f"{self.url(name)}: already exists; backups are never overwritten") from None
        except media_common.DataCorruption:
            raise OperationError(f"{self.url(name)}: the download does not match the bucket's checksum") from None
        except (api_exceptions.GoogleAPIError, media_common.InvalidResponse) as error:
            raise OperationError(f"{self.url(name)}: {type(error).__name__}: {error}") from None
        except google.auth.exceptions.GoogleAuthError as error:
            raise OperationError(f"{self.url(name)}: Google credentials: {error}") from None
        except requests.RequestException as error:
            raise OperationError(f"{self.url(name)}: cannot reach Cloud Storage ({type(error).__name__})") from None

    def upload(self, path: Path, name: str, content_type: str = "application/octet-stream") -> None:
        blob = self._handle().blob(name, chunk_size=CHUNK_BYTES)
        self._call(
            name,
            lambda: blob.upload_from_filename(
                str(path), content_type=content_type, if_generation_match=0, timeout=TIMEOUT_S, checksum="crc32c"
            ),
        )

    def download(self, name: str, path: Path) -> None:
        blob = self._handle().blob(name, chunk_size=CHUNK_BYTES)
        self._call(name, lambda: blob.download_to_filename(str(path), timeout=TIMEOUT_S, checksum="crc32c"))

    def read(self, name: str) -> bytes:
        blob = self._handle().blob(name)
        return self._call(name, lambda: blob.download_as_bytes(timeout=TIMEOUT_S, checksum="crc32c"))

    def names(self, prefix: str) -> list[str]:
        """Every object name under ``prefix``, sorted."""

        def listing() -> list[str]:
            return sorted(blob.name for blob in self._handle().client.list_blobs(self.name, prefix=prefix))

        return self._call(prefix, listing)


def _client(settings: Settings) -> Any:
    if settings.credentials_file is None:
        try:
            return storage.Client()
        except google.auth.exceptions.DefaultCredentialsError:
            raise OperationError(
                "no Google credentials: set credentials_file in the settings or provide application default credentials"
            ) from None
    try:
        return storage.Client.from_service_account_json(settings.credentials_file)
    except OSError as error:
        raise UsageError(
            f"{settings.source}: credentials_file: cannot read {settings.credentials_file} ({error.strerror})"
        ) from None
    except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError):
        raise UsageError(
            f"{settings.source}: credentials_file: {settings.credentials_file} is not a service account key"
        ) from None
