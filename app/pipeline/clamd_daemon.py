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


class OwnClamd:
    """A clamd this process started, and starts again if it dies (killed for memory, a
    crash on a hostile file): otherwise every scan after would wait for a scanner that
    never comes back, and every upload would stay `pending`."""

    def __init__(self, executable: str, directory: Path, database: Path, wait: float) -> None:
        self.address = f"unix://{directory / 'clamd.sock'}"
        self.database = database
        self._argv = [executable, "--config-file", str(directory / "clamd.conf")]
        self._directory = directory
        self._wait = wait
        self._process = self._launch()
        atexit.register(self.stop)
        self.engine = self._answer()

    def _launch(self) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(  # noqa: S603 - our own configuration, a fixed executable
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _answer(self) -> str:
        """clamd's version, once it has loaded its definitions and answers."""
        deadline = time.monotonic() + self._wait
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = self._directory / "clamd.log"
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise ClamdNotStarted(f"clamd stopped (exit {self._process.returncode}): {tail}")
            try:
                return clamd.version(self.address, 5)
            except clamd.ClamdUnavailable:
                time.sleep(0.1)  # loading its definitions
        self.stop()
        raise ClamdNotStarted(f"clamd did not answer within {self._wait:.0f} s")

    def revive(self) -> None:
        """Start clamd again if it has died; a live one that did not answer is left be
        (busy, or still loading), the scan retried later like any unavailable scanner."""
        if self._process.poll() is None:
            return
        self._process = self._launch()
        self._answer()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)


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
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    _config(directory, database, stream_bytes)
    return OwnClamd(executable, directory, database, wait_seconds)
