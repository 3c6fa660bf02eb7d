"""ClamAV for the tests: no internet means no official definitions, so a database of our
own (a ClamAV .ndb: hex body signatures) that detects the EICAR test string and a
marker of this project's, and a real clamd started on it (app/pipeline/clamd_daemon.py,
as `make run` starts its own)."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.pipeline import clamd_daemon

# The EICAR anti-virus test file (eicar.org): harmless, and every scanner detects it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"IMAGES-SERVICE-MALWARE-TEST-MARKER"
# Detected only by the database of a later "definitions update" (the rescan tests).
LATER_MARKER = b"IMAGES-SERVICE-MARKER-OF-A-LATER-UPDATE"
SIGNATURES = {"Images.Test.EICAR": EICAR, "Images.Test.Marker": MARKER}
LATER_SIGNATURES = {**SIGNATURES, "Images.Test.Later": LATER_MARKER}


def clamd_missing() -> str | None:
    if shutil.which("clamd") or Path("/usr/sbin/clamd").exists():
        return None
    return "clamd is not installed: .ci/run installs Debian's clamav-daemon"


def write_database(directory: Path, signatures: dict[str, bytes]) -> Path:
    """A database directory holding one .ndb (name:target:offset:hex; target 0: any file,
    offset *: anywhere). clamd reports a name with `.UNOFFICIAL` appended."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images-test.ndb").write_text(
        "".join(f"{name}:0:*:{body.hex()}\n" for name, body in signatures.items())
    )
    return directory


@contextmanager
def running_clamd(database: Path, stream_bytes: int = 64 * 1024 * 1024) -> Iterator[str]:
    """A real clamd on `database`; its address (unix://...)."""
    missing = clamd_missing()
    if missing:
        pytest.skip(missing)
    own = clamd_daemon.start(database, stream_bytes, wait_seconds=60)
    try:
        yield own.address
    finally:
        own.stop()
