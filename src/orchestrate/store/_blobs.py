"""Large values out of the store: compressed, and above a size in a blob store.

A step record's output is written as it is unless the run compresses (see
:func:`orchestrate.compress_after`) or its stored form is larger than the store's
*offload size*. Then the record holds a reference instead, in ``meta["packed"]``:

* ``{"encoding": "gzip", "size": n}`` with the output the base64 text of the compressed
  JSON (compressed, kept inline);
* ``{"encoding": "gzip" | "zstd" | "json", "blob": "<sha256>", "size": n, "stored": m}``
  with the output ``None``: the bytes are in the blob store under the run, named by
  their SHA-256.

The payload limits apply to what the record holds after offload. Blobs are written (and
flushed to disk) before the record that names them, so a record never names a blob that
is not there; a blob whose record lost the race is deleted with its run. Reading a record
back (:func:`unpack`) checks the blob's digest.

Where blobs go, by the first that says: :func:`use_blob_store`; the store URL's
``?blob_dir=`` (and ``?offload_bytes=``); ``$ORCHESTRATE_BLOB_DIR`` (and
``$ORCHESTRATE_OFFLOAD_BYTES``); else a directory next to a SQLite file
(``orchestrate.db.blobs/``); none for the in-memory store (its values stay in memory) or
PostgreSQL (its workers run on several machines: name a directory they share).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from orchestrate.errors import InvalidInputError, StoreError
from orchestrate.store.base import StepRecord

PACKED = "packed"
"""Key of a step record's ``meta`` saying how its output is stored (absent: as it is)."""

DEFAULT_OFFLOAD_BYTES = 64 * 1024
"""Stored forms larger than this (64 KiB) go to the blob store, by default."""

URL_OPTIONS = ("blob_dir", "offload_bytes")
"""Query parameters of a store URL naming its blob directory and offload size."""

BLOB_DIR_ENV = "ORCHESTRATE_BLOB_DIR"
OFFLOAD_ENV = "ORCHESTRATE_OFFLOAD_BYTES"

_SAFE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


class BlobStore:
    """Where offloaded values live: bytes by run and SHA-256. Subclass it for another place."""

    async def put(self, run_id: str, data: bytes) -> str:
        """Keep ``data`` for ``run_id``, durably; return its SHA-256 (hex)."""
        raise NotImplementedError

    async def get(self, run_id: str, digest: str) -> bytes | None:
        """The bytes kept under ``digest`` for ``run_id`` (``None``: not there)."""
        raise NotImplementedError

    async def run_ids(self) -> list[str]:
        """The runs that have blobs."""
        raise NotImplementedError

    async def delete_run(self, run_id: str) -> None:
        """Delete every blob of ``run_id`` (nothing when it has none)."""
        raise NotImplementedError


class MemoryBlobStore(BlobStore):
    """Blobs in this process's memory (the in-memory store's)."""

    def __init__(self) -> None:
        self._blobs: dict[str, dict[str, bytes]] = {}

    async def put(self, run_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(run_id, {})[digest] = bytes(data)
        return digest

    async def get(self, run_id: str, digest: str) -> bytes | None:
        return self._blobs.get(run_id, {}).get(digest)

    async def run_ids(self) -> list[str]:
        return list(self._blobs)

    async def delete_run(self, run_id: str) -> None:
        self._blobs.pop(run_id, None)


class FileBlobStore(BlobStore):
    """Blobs as files: ``<directory>/<run id>/<sha256>``, written atomically and flushed.

    Args:
        directory: where the blobs go (created when the first is written).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.directory)!r})"

    def _run_dir(self, run_id: str) -> Path:
        # Run ids are ours (hex) or the caller's: anything else is hex-encoded, reversibly.
        name = run_id if _SAFE.match(run_id) else "~" + run_id.encode().hex()
        return self.directory / name

    async def put(self, run_id: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, self._run_dir(run_id), digest, data)
        return digest

    @staticmethod
    def _write(folder: Path, digest: str, data: bytes) -> None:
        target = folder / digest
        if target.exists():
            return  # content-addressed: the same bytes are there
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new name survives a power loss, before the record names it
        finally:
            os.close(dir_fd)

    async def get(self, run_id: str, digest: str) -> bytes | None:
        path = self._run_dir(run_id) / digest
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def run_ids(self) -> list[str]:
        def names() -> list[str]:
            if not self.directory.is_dir():
                return []
            found = []
            for entry in self.directory.iterdir():
                if not entry.is_dir():
                    continue
                name = entry.name
                if name.startswith("~"):
                    try:
                        name = bytes.fromhex(name[1:]).decode()
                    except ValueError:
                        continue
                found.append(name)
            return found

        return await asyncio.to_thread(names)

    async def delete_run(self, run_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._run_dir(run_id), True)


@dataclasses.dataclass(frozen=True)
class Storage:
    """How a store keeps large values: its blob store (or none) and the offload size."""

    blobs: BlobStore | None
    offload_bytes: int = DEFAULT_OFFLOAD_BYTES


_CONFIGURED: weakref.WeakKeyDictionary[Any, Storage] = weakref.WeakKeyDictionary()


def _innermost(store: Any) -> Any:
    """The store under wrappers (``RetryingStore``, ``FaultyStore``), which keep it as ``inner``."""
    seen = 0
    while seen < 8 and "inner" in getattr(store, "__dict__", {}):
        store = store.__dict__["inner"]
        seen += 1
    return store


def use_blob_store(store: Any, blobs: BlobStore | None, *, offload_bytes: int = DEFAULT_OFFLOAD_BYTES) -> None:
    """Give ``store`` its blob store (``None``: never offload) and offload size.

    Args:
        store: the store (wrappers are seen through).
        blobs: e.g. ``FileBlobStore("/shared/blobs")``; every worker of a shared store must
            see the same blobs.
        offload_bytes: stored forms larger than this go to the blob store.

    Raises:
        InvalidInputError: ``offload_bytes`` is not a positive integer.
    """
    _CONFIGURED[_innermost(store)] = Storage(blobs, _positive(offload_bytes, "offload_bytes"))


def _positive(value: Any, what: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value.replace("_", ""))
        except ValueError:
            raise InvalidInputError(f"{what} must be a number of bytes, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{what} must be a positive number of bytes, got {value!r}")
    return value


def storage_of(store: Any) -> Storage:
    """The :class:`Storage` of ``store`` (resolved once per store; see the module's docs)."""
    inner = _innermost(store)
    try:
        found = _CONFIGURED.get(inner)
    except TypeError:  # not weakly referenceable: resolved each time
        return _resolve(inner)
    if found is None:
        found = _CONFIGURED[inner] = _resolve(inner)
    return found


def _resolve(store: Any) -> Storage:
    url = getattr(store, "url", None)
    options = dict(parse_qsl(urlsplit(url).query)) if isinstance(url, str) else {}
    where = f"store URL {url!r}" if isinstance(url, str) else "the store"
    size_text = options.get("offload_bytes") or os.environ.get(OFFLOAD_ENV) or None
    offload = DEFAULT_OFFLOAD_BYTES if size_text is None else _positive(size_text, f"{where}: offload_bytes")
    directory = options.get("blob_dir") or os.environ.get(BLOB_DIR_ENV) or None
    if directory:
        return Storage(FileBlobStore(directory), offload)
    scheme = url.split(":", 1)[0].lower() if isinstance(url, str) else ""
    path = getattr(store, "path", None)
    if scheme == "sqlite" and isinstance(path, str) and path != ":memory:":
        return Storage(FileBlobStore(os.path.abspath(path) + ".blobs"), offload)
    # The in-memory store keeps values in memory anyway, and PostgreSQL's workers run on
    # several machines (a directory here would be this machine's alone): no blob store
    # unless one is named.
    return Storage(None, offload)


# packing ------------------------------------------------------------------------------------


# One encoder, built once (``json.dumps`` with options builds one per call, a third of the cost).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)


def _compress(data: bytes, strategy: str, level: int | None) -> bytes:
    if strategy == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
    return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)


def _decompress(data: bytes, encoding: str) -> bytes:
    if encoding == "json":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "zstd":
        try:
            import zstandard
        except ImportError:
            raise StoreError(
                "a recorded value is zstd-compressed and the zstandard package is missing: "
                "pip install 'orchestrate-ai[zstd]'"
            ) from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise StoreError(f"a recorded value has an unknown encoding {encoding!r}; written by a newer orchestrate?")


_SMALL = (bool, int, float, type(None))


async def pack(
    record: StepRecord, storage: Storage, *, strategy: str | None = None, level: int | None = None
) -> StepRecord:
    """The record as written: its output compressed (``strategy``) and/or offloaded, or as it is.

    Returns ``record`` itself when it is kept as it is (the common case costs one JSON
    encoding of the output when a blob store is set, nothing otherwise).
    """
    output = record.output
    if type(output) in _SMALL or (strategy is None and storage.blobs is None):
        return record
    if type(output) is str and strategy is None and len(output) * 4 <= storage.offload_bytes:
        return record  # a short string: under the offload size even at 4 bytes a character
    text = _ENCODER.encode(output)
    if strategy is None and len(text) * 4 <= storage.offload_bytes:
        return record  # under the offload size even at 4 bytes a character: not worth encoding
    raw = text.encode()
    if strategy is None and len(raw) <= storage.offload_bytes:
        return record
    encoding = "json"
    data = raw
    if strategy is not None:
        squeezed = _compress(raw, strategy, level)
        if len(squeezed) < len(raw):
            data, encoding = squeezed, strategy
    meta = dict(record.meta)
    if storage.blobs is not None and len(data) > storage.offload_bytes:
        digest = await storage.blobs.put(record.run_id, data)
        meta[PACKED] = {"encoding": encoding, "blob": digest, "size": len(raw), "stored": len(data)}
        return dataclasses.replace(record, output=None, meta=meta)
    if encoding == "json":
        return record
    text = base64.b64encode(data).decode("ascii")
    if len(text) >= len(raw):
        return record  # base64 would undo what compression saved
    meta[PACKED] = {"encoding": encoding, "size": len(raw)}
    return dataclasses.replace(record, output=text, meta=meta)


def is_packed(record: StepRecord) -> bool:
    """Whether ``record``'s output is stored compressed or offloaded (read it with :func:`unpack`)."""
    meta = record.meta
    return bool(meta) and PACKED in meta


async def unpack(record: StepRecord, storage: Storage) -> StepRecord:
    """``record`` with its output as the step's stored form (fetched and decompressed).

    Raises:
        StoreError: the blob is missing or altered, or the store has no blob store.
    """
    info = record.meta.get(PACKED) if record.meta else None
    if not isinstance(info, dict):
        return record
    where = f"step {record.step_key!r} of run {record.run_id}"
    digest = info.get("blob")
    if digest is not None:
        if storage.blobs is None:
            raise StoreError(
                f"{where}: its output is in a blob store and this store has none configured; name the "
                f"directory its workers share with ?blob_dir= in the store URL or ${BLOB_DIR_ENV}"
            )
        data = await storage.blobs.get(record.run_id, str(digest))
        if data is None:
            raise StoreError(f"{where}: its output's blob {digest} is missing from {storage.blobs!r}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"{where}: its output's blob {digest} in {storage.blobs!r} was altered")
    else:
        data = base64.b64decode(str(record.output))
    value = json.loads(_decompress(data, str(info.get("encoding"))))
    meta = {k: v for k, v in record.meta.items() if k != PACKED}
    return dataclasses.replace(record, output=value, meta=meta)


async def sweep(store: Any) -> int:
    """Delete the blobs of runs the store no longer has (after pruning); return how many runs'.

    Safe at any time: a run's blobs are written while it runs, when the store has it.
    """
    blobs = storage_of(store).blobs
    if blobs is None:
        return 0
    deleted = 0
    for run_id in await blobs.run_ids():
        if await store.get_run(run_id) is None:
            await blobs.delete_run(run_id)
            deleted += 1
    return deleted


async def copy_blobs(store: Any, records: list[StepRecord], run_id: str) -> None:
    """Give run ``run_id`` its own copy of the blobs ``records`` name (a replay reusing them).

    The replay's records are copies of the source run's; with their blobs copied too, each
    run keeps what it reads however long the other is retained.

    Raises:
        StoreError: a blob is missing.
    """
    blobs = storage_of(store).blobs
    if blobs is None:
        return
    for record in records:
        info = record.meta.get(PACKED) if record.meta else None
        if not isinstance(info, dict) or info.get("blob") is None:
            continue
        data = await blobs.get(record.run_id, str(info["blob"]))
        if data is None:
            raise StoreError(f"step {record.step_key!r} of run {record.run_id}: its output's blob is missing")
        await blobs.put(run_id, data)


async def readable(record: StepRecord, store: Any) -> StepRecord:
    """``record`` with its output read back, for people to see; as stored when that fails."""
    if not is_packed(record):
        return record
    try:
        return await unpack(record, storage_of(store))
    except (StoreError, ValueError, OSError):
        return record
