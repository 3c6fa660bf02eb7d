"""A clamd of the worker's own, for when IMAGES_SCAN=clamav names none (IMAGES_CLAMD):
`make run`, and the worker Lambda, whose image carries ClamAV and its definitions
(Dockerfile.lambda). It listens on a private socket, loads its definitions once and
keeps them in memory for every scan after: a `clamscan` per file would load them again
each time (tens of seconds with the official database).
"""

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.pipeline import clamd

# Where Debian's and Ubuntu's clamav-freshclam keep the official definitions.
SYSTEM_DATABASE = Path("/var/lib/clamav")
# Where clamd lives when sbin is not on PATH (Debian's package, ClamAV's own release).
WELL_KNOWN_PLACES = (Path("/usr/sbin/clamd"), Path("/usr/local/sbin/clamd"))
INSTALL_HINT = (
    "install ClamAV (Debian/Ubuntu: apt install clamav-daemon; macOS: brew install clamav), "
    "or point IMAGES_CLAMD at a running clamd"
)


class ClamdNotStarted(Exception):
    """No clamd could be started: the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class OwnClamd:
    address: str
    engine: str
    database: Path


def _config(directory: Path, database: Path, stream_bytes: int) -> Path:
    # Streams may be as large as an upload; scans of them are bounded the same way.
    megabytes = stream_bytes // (1024 * 1024) + 1
    config = directory / "clamd.conf"
    config.write_text(
        f"LocalSocket {directory / 'clamd.sock'}\n"
        "Foreground yes\n"
        f"DatabaseDirectory {database}\n"
        f"LogFile {directory / 'clamd.log'}\n"
        f"StreamMaxLength {megabytes}M\n"
        # Content past clamd's scan limits (archives appended to an image, say) is
        # reported, as Heuristics.Limits.Exceeded, never passed as clean.
        "AlertExceedsMax yes\n"
        # The image fuzzy hash decodes every image to match image-similarity signatures:
        # 2 s for a 12 MP JPEG (62 ms without it, docs/benchmarks.md), unbounded in time
        # and memory, on the images the worker decodes itself within a budget. Body and
        # logical signatures (what finds code in or after an image) are unaffected.
        "ScanImageFuzzyHash no\n"
        # One copy of the definitions in memory: a concurrent reload holds two (the
        # worker's memory is sized for one, docs and template.yaml).
        "ConcurrentDatabaseReload no\n"
        "SelfCheck 0\n"
    )
    return config


def start(database: Path | None, stream_bytes: int, wait_seconds: float) -> OwnClamd:
    """Start clamd on `database` (default: the system's) and wait until it answers."""
    executable = shutil.which("clamd") or next(
        (str(path) for path in WELL_KNOWN_PLACES if path.exists()), None
    )
    if executable is None:
        raise ClamdNotStarted(f"IMAGES_SCAN=clamav, but clamd is not installed: {INSTALL_HINT}")
    database = database or SYSTEM_DATABASE
    if not any(database.glob("*.c[lv]d")) and not any(database.glob("*.[nh]db")):
        raise ClamdNotStarted(
            f"IMAGES_SCAN=clamav, but {database} holds no ClamAV definitions: run freshclam, "
            "or set IMAGES_CLAMAV_DATABASE to a directory that has some"
        )
    directory = Path(tempfile.mkdtemp(prefix="images-clamd-"))
    config = _config(directory, database, stream_bytes)
    process = subprocess.Popen(  # noqa: S603 - our own configuration, a fixed executable
        [executable, "--config-file", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(_stop, process, directory)
    address = f"unix://{directory / 'clamd.sock'}"
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = directory / "clamd.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise ClamdNotStarted(f"clamd stopped at start (exit {process.returncode}): {tail}")
        try:
            return OwnClamd(address, clamd.version(address, 5), database)
        except clamd.ClamdUnavailable:
            time.sleep(0.1)  # loading its definitions
    _stop(process, directory)
    raise ClamdNotStarted(f"clamd did not answer within {wait_seconds:.0f} s")


def _stop(process: "subprocess.Popen[bytes]", directory: Path) -> None:
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
    shutil.rmtree(directory, ignore_errors=True)
