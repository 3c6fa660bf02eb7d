"""Real server processes for the HTTP tier: moto server and uvicorn, on loopback."""

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import httpx2 as httpx

from app.config import KEEP_ALIVE_SECONDS
from app.local.server import free_port

T = TypeVar("T")

# What every child process gets: enough to run Python, never the developer's AWS setup.
BASE_ENV = {
    "PATH": os.environ.get("PATH", ""),
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PYTHONUNBUFFERED": "1",
}


class Server:
    """A child process whose output goes to a file: a pipe nobody drains fills up after
    64 KiB of access log, and the server then blocks on its next log line."""

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
        self.process = process
        self._log = log

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.output()
            if text in output:
                return output
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} not printed within {timeout} s:\n{self.output()}")


def wait_for(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 30) -> T:
    """Read until `done` says so (what a client polling for a result does)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def wait_until_up(url: str | None, server: Server, timeout: float) -> None:
    """Until `url` answers (None: a server with no HTTP face, which only has to start)."""
    deadline = time.monotonic() + timeout
    if url is None:
        time.sleep(0.5)
        if server.process.poll() is not None:
            raise RuntimeError(f"exited with {server.process.returncode}:\n{server.output()}")
        return
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.output()}"
            )
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextmanager
def running(
    argv: Sequence[str], env: dict[str, str], ready_url: str | None, timeout: float = 30
) -> Iterator[Server]:
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(list(argv), env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(process, log)
        try:
            wait_until_up(ready_url, server, timeout)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class MakeRun:
    url: str
    token: str  # the demo token it printed
    server: Server


@contextmanager
def make_run_server(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[MakeRun]:
    """`python -m app serve` (what `make run` runs) as on a fresh machine: no AWS
    configured, the embedded emulator in-process keeping its state in `data_dir`, a demo
    token printed. Stopped as Ctrl-C stops it (SIGTERM) unless the test kills it first."""
    port = free_port()
    environment = make_run_env(data_dir, port, env)
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "app", "serve", *args]
    with running(argv, environment, f"{base}/health", timeout=60) as server:
        banner = server.wait_for_output("export TOKEN=")
        match = re.search(r"export TOKEN=(\S+)", banner)
        assert match is not None, banner
        yield MakeRun(base, match.group(1), server)


def make_run_env(data_dir: Path, port: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `make run` on a fresh machine (no AWS configured), with `env`."""
    environment = {k: v for k, v in BASE_ENV.items() if not k.startswith("AWS_")}
    return environment | {"IMAGES_PORT": str(port), "IMAGES_DATA_DIR": str(data_dir), **(env or {})}


def make_run_refused(
    data_dir: Path, env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    """`python -m app serve` started as `make run` starts it, where it is meant to refuse:
    how it exited and what it said."""
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env=make_run_env(data_dir, free_port(), env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def moto_server() -> Iterator[str]:
    """The embedded emulator `make run` uses (moto, one request at a time), alone."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "app.local", "--port", str(port)]
    with running(argv, BASE_ENV, f"{url}/moto-api/"):
        yield url


def uvicorn_command(port: int) -> list[str]:
    """The container's command line (see Dockerfile), on a port of the test's choosing."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.http.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--timeout-keep-alive",
        str(KEEP_ALIVE_SECONDS),
    ]


LOCALSTACK_PYTHON = Path(__file__).resolve().parent.parent / ".localstack" / "bin" / "python"


def localstack_missing() -> str | None:
    """Why the LocalStack tier cannot run here, or None when it can."""
    if not LOCALSTACK_PYTHON.exists():
        return "LocalStack is not installed: `make test` installs it (needs Python >= 3.13)"
    return None


def _localstack_up(url: str) -> bool:
    try:
        services = httpx.get(f"{url}/_localstack/health", timeout=1).json()["services"]
    except (httpx.TransportError, ValueError, KeyError):
        return False
    return all(services.get(name) in ("available", "running") for name in ("s3", "sqs"))


@contextmanager
def localstack() -> Iterator[str]:
    """LocalStack's S3 and SQS on loopback, no Docker, with signature validation on."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as volume:
        env = {
            **BASE_ENV,
            "SERVICES": "s3,sqs",
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "S3_SKIP_SIGNATURE_VALIDATION": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LOCALSTACK_VOLUME_DIR": volume,
            "TMPDIR": volume,
        }
        argv = [str(LOCALSTACK_PYTHON), "-m", "localstack.runtime.main"]
        with running(argv, env, f"{url}/_localstack/health", timeout=90) as server:
            deadline = time.monotonic() + 60
            while not _localstack_up(url):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"LocalStack's S3 and SQS never came up:\n{server.output()}")
                time.sleep(0.2)
            yield url
