"""What `make run` keeps across restarts: the emulator's items, objects and messages under
a data directory, written through before each answer, so that an answer the service got
is never lost (a `kill -9` loses at most the request in flight).

Chosen by measuring (docs/benchmarks.md): moto's own recorder logs every request, reads
and long polls included, and replays them one by one; 1,000 uploads with their thumbs
made 12,796 requests (18 MB) that took 210 s to replay. Here what a write changed is
stored as it now is, and a restart loads it straight into moto's backends: a second or
two for 1,000 images.

    data/
      lock                  held while a process uses the directory
      items.jsonl           DynamoDB: one line per written item (its state, or a deletion);
                            the last line for a key wins; compacted at each start
      objects/<bucket>/...  S3: each object's bytes, and its metadata and tags beside them
      messages/<queue>/...  SQS: each message's body, as it arrives and until it is deleted

Resources (tables, buckets, queues and their settings) are not kept: the service
creates them from code at every start, before this loads what they held.
"""

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

_DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
# Compact the items log once it holds this many lines more than a snapshot would.
_COMPACT_AFTER = 20_000


# What the directory's keys look like. 2: every object under u/<owner>/<image id>/ (per
# user prefixes, 2026-11-30); 1 (no file): images/<id> and variants/<id>/.
_LAYOUT = "2"


class DataDirectoryError(Exception):
    """The directory cannot be used: the message says why and what to do."""


class DataDirectoryInUse(DataDirectoryError):
    """Another process keeps its state in this directory."""


class DataDirectoryOutdated(DataDirectoryError):
    """The directory holds images stored under an earlier key layout."""


@dataclass(frozen=True, slots=True)
class Restored:
    items: int
    objects: int
    messages: int


def _backends(module: str, name: str) -> Iterator[Any]:
    """Every backend moto has made for a service, in every account and region."""
    backends = getattr(__import__(module, fromlist=[name]), name)
    for regions in list(backends.values()):
        yield from list(regions.values())


def _sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, data: bytes) -> None:
    """Whole or not at all, and on disk before this returns: a temporary file, synced,
    renamed over the old one, and the directory synced so the rename stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)
    _sync(path.parent)


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._items = directory / "items.jsonl"
        self._objects = directory / "objects"
        self._messages = directory / "messages"
        self._lock: BinaryIO | None = None
        self._log: BinaryIO | None = None
        self._logged = 0
        self._live = 0
        # Each queue's message ids as kept on disk.
        self._queued: dict[str, set[str]] = {}
        # Until restored, requests (the service creating its resources) change nothing
        # worth keeping, and must not overwrite what is kept.
        self._restored = False

    # --- Owning the directory -------------------------------------------------------

    def open(self, fresh: bool = False) -> None:
        """Take the directory for this process (emptied first if `fresh`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = (self.directory / "lock").open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirectoryInUse(
                f"{self.directory} is in use by another `make run`: stop it, or set "
                "IMAGES_DATA_DIR to another directory"
            ) from exc
        if fresh:
            for entry in self.directory.iterdir():
                if entry.name != "lock":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        layout = self.directory / "layout"
        if not layout.exists() and (self._items.exists() or self._objects.exists()):
            # Never read as if it were today's: images would be listed without their
            # bytes. Refused, untouched, with the way out.
            raise DataDirectoryOutdated(
                f"{self.directory} holds images stored under an earlier key layout, which "
                "this version does not read. Keep them by starting the earlier version; "
                "or move the directory away (or start with --fresh) to begin a new gallery"
            )
        _write_atomically(layout, _LAYOUT.encode())

    # --- Restoring ------------------------------------------------------------------

    def restore(self) -> Restored:
        """Load what the directory holds into moto's backends (whose tables, buckets and
        queues exist by now), then compact the items log."""
        items = self._restore_items()
        objects = self._restore_objects()
        messages = self._restore_messages()
        self._compact()
        self._restored = True
        return Restored(items, objects, messages)

    def _restore_items(self) -> int:
        latest: dict[str, tuple[str, dict[str, Any] | None]] = {}
        if self._items.exists():
            for line in self._items.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill: its request never answered
                latest[json.dumps([entry["table"], entry["key"]], sort_keys=True)] = (
                    entry["table"],
                    entry["item"],
                )
        tables = self._tables()
        restored = 0
        for table_name, item in latest.values():
            if item is not None and table_name in tables:
                tables[table_name].put_item(table_name, item, overwrite=True)
                restored += 1
        return restored

    def _restore_objects(self) -> int:
        buckets = self._buckets()
        restored = 0
        for meta_path in sorted(self._objects.glob("*/*.json")):
            bucket_name = unquote(meta_path.parent.name)
            if bucket_name not in buckets:
                continue
            meta = json.loads(meta_path.read_bytes())
            backend = buckets[bucket_name]
            key = backend.put_object(
                bucket_name,
                meta["key"],
                meta_path.with_name(meta_path.name.removesuffix(".json") + ".bytes").read_bytes(),
                storage=meta.get("storage"),
                disable_notification=True,  # its notification was taken, or is kept below
            )
            key.set_metadata(meta["metadata"], replace=True)
            if meta["tags"]:
                backend.put_object_tagging(key, meta["tags"])
            restored += 1
        return restored

    def _restore_messages(self) -> int:
        """Send each kept message again; the new ones are kept (under their new ids)
        before the old files go: a crash in between delivers a message twice, which the
        worker takes as any redelivery."""
        queues = self._queues()
        kept = sorted(self._messages.glob("*/*.json"), key=lambda path: path.stat().st_mtime_ns)
        restored = 0
        for path in kept:
            queue_name = unquote(path.parent.name)
            if queue_name in queues:
                queues[queue_name].send_message(queue_name, json.loads(path.read_bytes()))
                restored += 1
        self._queues_changed()
        for path in kept:
            path.unlink()
        for folder in {path.parent for path in kept}:
            _sync(folder)
        return restored

    # --- Writing through ---------------------------------------------------------------

    def after(self, environ: dict[str, Any], body: bytes) -> None:
        """Persist what a request that succeeded has changed. Called with requests into
        moto serialized, before the answer leaves."""
        if not self._restored:
            return
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB_"):
            operation = target.rpartition(".")[2]
            if operation in _DYNAMODB_WRITES:
                self._items_written(operation, json.loads(body or b"{}"))
            return
        if target.startswith("AmazonSQS."):
            self._queues_changed()
            return
        if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE"):
            self._objects_written(environ, body)
            self._queues_changed()  # a new object may have notified a queue

    def _items_written(self, operation: str, request: dict[str, Any]) -> None:
        tables = self._tables()
        written = []
        for table_name, key in _written_keys(operation, request, tables):
            backend = tables.get(table_name)
            if backend is None:
                continue
            item = backend.get_item(table_name, key)
            written.append(
                {
                    "table": table_name,
                    "key": key,
                    "item": None if item is None else item.to_json()["Attributes"],
                }
            )
        if not written:
            return
        log = self._open_log()
        log.write(b"".join(json.dumps(entry).encode() + b"\n" for entry in written))
        log.flush()
        os.fsync(log.fileno())
        self._logged += len(written)
        if self._logged > self._live + _COMPACT_AFTER:
            self._compact()

    def _objects_written(self, environ: dict[str, Any], body: bytes) -> None:
        parts = urlsplit(environ.get("RAW_URI") or environ.get("PATH_INFO", ""))
        bucket_name, _, key = parts.path.lstrip("/").partition("/")
        bucket_name, key = unquote(bucket_name), unquote(key)
        query = parts.query or environ.get("QUERY_STRING", "")
        if key:
            keys = [key]
        elif "delete" in query:
            keys = _deleted_keys(body)  # DeleteObjects names its keys in the body
        else:
            return  # a bucket's own settings: the service applies them at every start
        backend = self._buckets().get(bucket_name)
        if backend is None:
            return
        for name in keys:
            # Tagging changes only what is kept beside the bytes, not the bytes.
            self._save_object(backend, bucket_name, name, with_bytes="tagging" not in query)

    def _save_object(self, backend: Any, bucket_name: str, name: str, with_bytes: bool) -> None:
        folder, stem = self._objects / quote(bucket_name, safe=""), quote(name, safe="")
        meta_path, bytes_path = folder / f"{stem}.json", folder / f"{stem}.bytes"
        key = backend.get_object(bucket_name, name)
        if key is None:
            # Metadata first: without it a restore ignores whatever bytes are left.
            for path in (meta_path, bytes_path):
                path.unlink(missing_ok=True)
            if folder.exists():
                _sync(folder)
            return
        if with_bytes or not bytes_path.exists():
            _write_atomically(bytes_path, key.value)
        meta = {
            "key": name,
            "metadata": dict(key.metadata),
            "storage": key.storage_class,
            "tags": {tag["Key"]: tag["Value"] for tag in backend.get_object_tagging(key)["Tags"]},
        }
        # Metadata last: a restore takes an object only once its metadata is there.
        _write_atomically(meta_path, json.dumps(meta).encode())

    def _queues_changed(self) -> None:
        """Keep each message that arrived since, forget each one deleted since: a file
        per message, so a busy queue costs a file per message, not the queue per
        request."""
        for name, backend in self._queues().items():
            messages = {message.id: message for message in backend.queues[name]._messages}
            kept = self._queued.setdefault(name, set())
            folder = self._messages / quote(name, safe="")
            for message_id in messages.keys() - kept:
                _write_atomically(
                    folder / f"{message_id}.json", json.dumps(messages[message_id].body).encode()
                )
            gone = kept - messages.keys()
            for message_id in gone:
                (folder / f"{message_id}.json").unlink(missing_ok=True)
            if gone:
                _sync(folder)
            self._queued[name] = set(messages)

    def _open_log(self) -> BinaryIO:
        if self._log is None:
            self._items.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._items.open("ab")
        return self._log

    def _compact(self) -> None:
        """Rewrite the items log as one line per item now in the tables."""
        lines = []
        for table_name, backend in self._tables().items():
            table = backend.get_table(table_name)
            for item in table.all_items():
                key = {
                    name: item.attrs[name].to_json()
                    for name in (table.hash_key_attr, table.range_key_attr)
                    if name
                }
                lines.append(
                    json.dumps(
                        {"table": table_name, "key": key, "item": item.to_json()["Attributes"]}
                    ).encode()
                )
        if self._log is not None:
            self._log.close()
            self._log = None
        _write_atomically(self._items, b"".join(line + b"\n" for line in lines))
        self._logged = self._live = len(lines)

    # --- moto's backends ------------------------------------------------------------------

    @staticmethod
    def _tables() -> dict[str, Any]:
        return {
            name: backend
            for backend in _backends("moto.dynamodb.models", "dynamodb_backends")
            for name in list(backend.tables)
        }

    @staticmethod
    def _buckets() -> dict[str, Any]:
        return {
            name: backend
            for backend in _backends("moto.s3.models", "s3_backends")
            for name in list(backend.buckets)
        }

    @staticmethod
    def _queues() -> dict[str, Any]:
        return {
            name: backend
            for backend in _backends("moto.sqs.models", "sqs_backends")
            for name in list(backend.queues)
        }

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _written_keys(
    operation: str, request: dict[str, Any], tables: dict[str, Any]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, key) of every item a DynamoDB write names."""

    def key_of(table_name: str, item: dict[str, Any]) -> dict[str, Any]:
        table = tables[table_name].get_table(table_name)
        return {name: item[name] for name in (table.hash_key_attr, table.range_key_attr) if name}

    if operation == "PutItem":
        yield request["TableName"], key_of(request["TableName"], request["Item"])
    elif operation in ("UpdateItem", "DeleteItem"):
        yield request["TableName"], request["Key"]
    elif operation == "TransactWriteItems":
        for entry in request["TransactItems"]:
            for kind in ("Put", "Update", "Delete"):
                if kind in entry:
                    write = entry[kind]
                    table_name = write["TableName"]
                    yield table_name, write.get("Key") or key_of(table_name, write["Item"])
    else:  # BatchWriteItem
        for table_name, writes in request["RequestItems"].items():
            for write in writes:
                if "PutRequest" in write:
                    yield table_name, key_of(table_name, write["PutRequest"]["Item"])
                else:
                    yield table_name, write["DeleteRequest"]["Key"]


def _deleted_keys(body: bytes) -> list[str]:
    """The keys a DeleteObjects request names."""
    with contextlib.suppress(ElementTree.ParseError):
        root = ElementTree.fromstring(body)  # noqa: S314 - our own client's request
        return [
            element.text or "" for element in root.iter() if element.tag.rpartition("}")[2] == "Key"
        ]
    return []
