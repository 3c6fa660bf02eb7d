"""Deleting an image, after its record is marked (DELETE and the sweep both finish it)."""

from app.domain.records import ImageRecord
from app.storage import Storage


def finish_delete(storage: Storage, marked: ImageRecord, now: int) -> None:
    """Steps 2 and 3 of a delete, for a record already marked `deleting`: its bytes (the
    original and every variant it may have), then the record with its quota given back.
    Safe to repeat; interrupted, the sweep finishes it."""
    storage.objects.delete(marked)
    storage.table.delete_record(marked, now)
