"""Run a handler the way the Lambda image does, without Docker: AWS's runtime interface
client (awslambdaric, the image's entry point) in a bare interpreter whose only
third-party code is what Dockerfile.lambda installs, talking to a Lambda Runtime API
served here (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html)."""

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The runtime interface client the Lambda base image runs (its own copy, not ours).
AWSLAMBDARIC = "awslambdaric==4.2.2"
API = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:image-service"


class RuntimeApi:
    """The Runtime API: hands out queued events, collects responses and errors."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.results: dict[str, queue.Queue[tuple[str, Any]]] = {}
        self.init_errors: list[Any] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != f"{API}/invocation/next":
                    self.send_error(404)
                    return
                item = api.events.get()
                if item is None:  # shutting down
                    self.send_error(500)
                    return
                request_id, event = item
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header(
                    "Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000)
                )
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                self.send_header(
                    "Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793"
                )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                payload = json.loads(body) if body else None
                parts = self.path.removeprefix(f"{API}/").split("/")
                if parts == ["init", "error"]:
                    api.init_errors.append(payload)
                elif len(parts) == 3 and parts[0] == "invocation":
                    api.results.setdefault(parts[1], queue.Queue()).put((parts[2], payload))
                else:
                    self.send_error(404)
                    return
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def invoke(self, event: Any, timeout: float = 60) -> tuple[str, Any]:
        """Queue one invocation; ("response", payload) or ("error", error)."""
        request_id = str(uuid.uuid4())
        self.results.setdefault(request_id, queue.Queue())
        self.events.put((request_id, event))
        return self.results[request_id].get(timeout=timeout)

    def close(self) -> None:
        self.events.put(None)
        self._server.shutdown()
        self._server.server_close()


def _runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], AWSLAMBDARIC]


def dependencies(cache: Path) -> Path:
    """The runtime dependencies, installed as Dockerfile.lambda installs them (pip
    --target), once per dependency list: a second `make test` reuses them."""
    requirements = _runtime_requirements()
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:16]
    target = cache / key
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
             "--target", str(target), *requirements],
            check=True,
        )  # fmt: skip
        (target / ".complete").touch()
    return target


@contextmanager
def task_root(deps: Path) -> Iterator[Path]:
    """A fresh LAMBDA_TASK_ROOT: the dependencies, and this project installed the way the
    Dockerfile does (pip install --target of the project; its dependencies are above)."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for entry in deps.iterdir():
            if entry.name != ".complete":
                (root / entry.name).symlink_to(entry)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
             "--no-deps", "--target", str(root), str(ROOT)],
            check=True,
        )  # fmt: skip
        yield root


# `python -m awslambdaric HANDLER`, as the image runs it, in an isolated interpreter
# (-I: no user site, no PYTHON* variables, no current directory; -S: no site-packages at
# all). The image puts /var/task first on the path: so does this.
_BOOT = (
    "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
    "sys.argv = ['awslambdaric', sys.argv[2]]; "
    "runpy.run_module('awslambdaric', run_name='__main__', alter_sys=True)"
)


@contextmanager
def running_handler(
    root: Path, handler: str, env: dict[str, str]
) -> Iterator[tuple[RuntimeApi, subprocess.Popen[bytes]]]:
    api = RuntimeApi()
    interpreter = getattr(sys, "_base_executable", sys.executable)
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "LAMBDA_TASK_ROOT": str(root),
        "_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": "image-service",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        **env,
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [interpreter, "-I", "-S", "-c", _BOOT, str(root), handler],
            cwd=root,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield api, process
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-5000:])
            raise
        finally:
            api.close()
            process.kill()
            process.wait()
