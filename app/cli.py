"""`images`: the command-line client. It speaks only the public HTTP API, like any client
(the one thing it takes from the package is the table of formats, to type files by name).

    images login --url http://localhost:8080 --token "$TOKEN"
    images upload ~/Pictures/album/*.jpg --tag holiday      # a few at a time, resumable
    images ls --tag pets
    images get ID -o copy.png
    images url ID
    images rm ID...

Every command takes --json for machine-readable output. Errors go to stderr; the exit
status is 0 on success, 1 when anything failed, 2 for bad usage.

Every call it makes is safe to repeat (uploads carry an Idempotency-Key per file), so it
retries what the service says to retry (the error codes `unavailable` and
`rate_limited`, after their Retry-After) and lost connections, a few times with backoff:
a flaky network never creates a duplicate.
"""

import argparse
import json
import mimetypes
import os
import stat
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

from app.domain.formats import FORMATS

CHUNK = 64 * 1024
ATTEMPTS = 5
MAX_WAIT_SECONDS = 30.0
# Uploads in flight at once: enough to hide latency, few enough to stay far below the
# service's bound on unconfirmed uploads however many files are given.
DEFAULT_PARALLEL = 4
T = TypeVar("T")
# A file's type from its name, from the service's own table of formats (the first row
# wins an extension two claim: .heic is HEIC, the specific kind).
TYPES = {ext: f.content_type for f in reversed(FORMATS) for ext in f.extensions}
LABELS = ", ".join(f.label for f in FORMATS)
# Refusals worth waiting out, by the code the service answers with.
RETRIED = frozenset({"unavailable", "rate_limited"})


class CliError(Exception):
    """A failure to report on stderr, with exit status 1."""


class _Retry(Exception):
    def __init__(self, reason: str, wait: float) -> None:
        super().__init__(reason)
        self.wait = wait


def _backoff(attempt: int) -> float:
    return min(MAX_WAIT_SECONDS, 0.5 * 2.0**attempt)


def _retrying(action: Callable[[], T], what: str) -> T:
    """Run `action`, again after the wait it asks for when it raises _Retry."""
    for attempt in range(ATTEMPTS):
        try:
            return action()
        except _Retry as retry:
            if attempt == ATTEMPTS - 1:
                raise CliError(f"{what}: {retry} (gave up after {ATTEMPTS} attempts)") from retry
            time.sleep(retry.wait if retry.wait >= 0 else _backoff(attempt))
    raise AssertionError("unreachable")


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return None
    try:
        seconds = float(str(value))
    except ValueError:
        return None
    return min(MAX_WAIT_SECONDS, seconds)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "images" / "config.json"


@dataclass(frozen=True)
class Api:
    url: str
    token: str

    @classmethod
    def from_config(cls) -> "Api":
        """IMAGES_URL/IMAGES_TOKEN win over the saved login, for scripts and CI."""
        saved: dict[str, str] = {}
        path = config_path()
        if path.exists():
            saved = json.loads(path.read_text())
        url = os.environ.get("IMAGES_URL") or saved.get("url")
        token = os.environ.get("IMAGES_TOKEN") or saved.get("token")
        if not url or not token:
            raise CliError("not logged in: run `images login --url URL --token TOKEN`")
        return cls(url.rstrip("/"), token)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()

        def attempt() -> Any:
            request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
            request.add_header("Authorization", f"Bearer {self.token}")
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    payload = response.read()
            except urllib.error.HTTPError as exc:
                wait = _retry_after(exc.headers)
                code, detail = _problem(exc)
                # A quota (quota_images, quota_bytes) is not worth waiting for; a busy
                # service or too many unconfirmed uploads at once are. 502 and 504: a
                # gateway in front that did not get an answer.
                if code in RETRIED or exc.code in (502, 504):
                    raise _Retry(f"{exc.code} {detail}", -1 if wait is None else wait) from exc
                raise CliError(f"{method} {path}: {exc.code} {detail} ({code})") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                raise _Retry(f"cannot reach {self.url}: {exc}", -1) from exc
            return json.loads(payload) if payload else None

        return _retrying(attempt, f"{method} {path}")


def _problem(exc: urllib.error.HTTPError) -> tuple[str, str]:
    """The error's code (what to do depends on it) and its detail (what to say)."""
    try:
        body = json.loads(exc.read())
        code, detail = str(body.get("code", "")), body.get("detail")
    except (ValueError, AttributeError):
        return "", str(exc.reason)
    if isinstance(detail, list):  # a refused request: where and why
        return code, "; ".join(
            f"{'.'.join(map(str, e.get('loc', [])[1:]))}: {e.get('msg')}" for e in detail
        )
    return code, str(detail)


class Progress:
    """One file: a bar per file (start and end only when stderr is not a terminal).
    Many files in parallel: a line per finished file, with the count so far."""

    def __init__(self, files: int) -> None:
        self._files = files
        self._finished = 0
        self._lock = threading.Lock()

    def bytes(self, name: str, done: int, total: int) -> None:
        if self._files > 1 or (not sys.stderr.isatty() and done not in (0, total)):
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(
            f"\r{name[:30]:<30} [{'#' * filled}{'.' * (width - filled)}] "
            f"{100 * done // max(total, 1):3d}%"
        )
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def finished(self, name: str, error: str | None) -> None:
        with self._lock:
            self._finished += 1
            if error is not None:
                sys.stderr.write(f"error: {error}\n")
            elif self._files > 1:
                sys.stderr.write(f"[{self._finished}/{self._files}] {name}\n")
            sys.stderr.flush()


def _chunks(handle: BinaryIO, name: str, total: int, progress: Progress) -> Iterator[bytes]:
    done = 0
    progress.bytes(name, 0, total)
    while chunk := handle.read(CHUNK):
        done += len(chunk)
        progress.bytes(name, done, total)
        yield chunk


def _put(upload: dict[str, Any], path: Path, size: int, progress: Progress) -> None:
    """PUT the file to the presigned URL. 412 means our own earlier attempt already
    stored it (the URL only ever accepts the first upload)."""
    with path.open("rb") as handle:
        request = urllib.request.Request(  # noqa: S310 - the URL the API returned
            upload["url"],
            data=_chunks(handle, path.name, size, progress),
            method=upload["method"],
            headers=upload["headers"],
        )
        try:
            urllib.request.urlopen(request, timeout=300).close()  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code == 412:
                return
            if exc.code >= 500:
                raise _Retry(f"storage answered {exc.code}", -1) from exc
            raise CliError(f"{path}: upload to storage refused: {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _Retry(f"upload to storage failed: {exc}", -1) from exc


def _upload_one(
    api: Api, path: Path, tags: list[str], title: str | None, progress: Progress
) -> dict[str, Any]:
    content_type = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if content_type not in TYPES.values():
        raise CliError(f"{path}: not the name of an image the service takes ({LABELS})")
    size = path.stat().st_size
    # One key per file for this run: however often the create is retried, one image.
    key = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
    created = api.call(
        "POST",
        "/images",
        {
            "filename": path.name,
            "content_type": content_type,
            "size": size,
            "tags": tags,
            **({"title": title} if title else {}),
        },
        headers=key,
    )
    if created["image"]["status"] != "ready":
        _retrying(lambda: _put(created["upload"], path, size, progress), str(path))
    ready: dict[str, Any] = api.call("POST", f"/images/{created['image']['id']}/confirm")
    return ready


def _variants(image: dict[str, Any]) -> str:
    """ "ready", "pending" or "failed" when both agree, else each: "thumb ready, ..."."""
    states: dict[str, str] = {
        name: str(variant["status"]) for name, variant in image["variants"].items()
    }
    if len(set(states.values())) == 1:
        return next(iter(states.values()))
    return ", ".join(f"{name} {state}" for name, state in states.items())


def _print_table(images: list[dict[str, Any]]) -> None:
    rows = [("ID", "CREATED", "SIZE", "DIMENSIONS", "TYPE", "VARIANTS", "NAME", "TAGS")]
    for image in images:
        dims = f"{image['width']}x{image['height']}" if image.get("width") else "-"
        rows.append(
            (
                image["id"],
                image["created_at"][:19].replace("T", " "),
                str(image["size"]),
                dims,
                image["content_type"].removeprefix("image/"),
                _variants(image),
                image["filename"],
                ",".join(image["tags"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def cmd_login(args: argparse.Namespace) -> None:
    token = args.token or os.environ.get("IMAGES_TOKEN") or sys.stdin.readline().strip()
    api = Api(args.url.rstrip("/"), token)
    api.call("GET", "/images", query={"limit": "1"})  # proves URL and token work
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A bearer token is a password: the file is private from its first byte, whatever
    # the umask (chmod after writing would leave a moment when others could read it).
    private = stat.S_IRUSR | stat.S_IWUSR
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private)
    with os.fdopen(descriptor, "w") as config:
        os.fchmod(config.fileno(), private)  # a file from before may be wider; still empty
        config.write(json.dumps({"url": api.url, "token": token}))
    _out(args, {"url": api.url, "config": str(path)}, f"logged in to {api.url}")


def cmd_upload(args: argparse.Namespace) -> None:
    api = Api.from_config()
    progress = Progress(len(args.files))

    def upload(name: str) -> dict[str, Any] | dict[str, str]:
        try:
            image = _upload_one(api, Path(name), args.tag, args.title, progress)
        except (CliError, OSError) as exc:
            progress.finished(name, str(exc))
            return {"file": name, "error": str(exc)}
        progress.finished(name, None)
        return image

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        results = list(pool.map(upload, args.files))
    done = [result for result in results if "error" not in result]
    failed = [result for result in results if "error" in result]
    _out(
        args,
        {"uploaded": done, "failed": failed},
        f"{len(done)} uploaded, {len(failed)} failed"
        + "".join(
            f"\n  {image['id']}  {image['filename']}  {image['width']}x{image['height']}"
            for image in done
        ),
    )
    if failed:
        raise CliError(f"{len(failed)} of {len(args.files)} uploads failed")


def cmd_ls(args: argparse.Namespace) -> None:
    api = Api.from_config()
    query = {"limit": str(args.limit)}
    if args.type:
        query["content_type"] = TYPES.get(f".{args.type}", args.type)
    if args.tag:
        query["tag"] = args.tag
    images: list[dict[str, Any]] = []
    while True:
        page = api.call("GET", "/images", query=query)
        images += page["items"]
        if not args.all or not page["next_cursor"]:
            break
        query["cursor"] = page["next_cursor"]
    if args.json:
        print(json.dumps(images, indent=2))
    else:
        _print_table(images)


def cmd_get(args: argparse.Namespace) -> None:
    api = Api.from_config()
    image = api.call("GET", f"/images/{args.id}")
    # Never trust a stored filename as a path: keep its last component only.
    name = Path(image["filename"]).name or args.id
    if args.variant != "original":
        if args.variant not in image["variants"]:
            valid = ", ".join(["original", *image["variants"]])
            raise CliError(f"no variant {args.variant!r}: one of {valid}")
        extension = mimetypes.guess_extension(image["variants"][args.variant]["content_type"])
        name = f"{Path(name).stem or args.id}.{args.variant}{extension or ''}"
    target = Path(args.output) if args.output else Path(name)
    if target.exists() and not args.force:
        raise CliError(f"{target} exists (use --force to overwrite)")
    link = api.call("GET", f"/images/{args.id}/download", query={"variant": args.variant})
    try:
        with urllib.request.urlopen(link["url"], timeout=300) as response, target.open("wb") as out:  # noqa: S310
            while chunk := response.read(CHUNK):
                out.write(chunk)
    except urllib.error.URLError as exc:
        raise CliError(f"download failed: {exc}") from exc
    _out(
        args,
        {
            "id": args.id,
            "variant": args.variant,
            "path": str(target),
            "size": target.stat().st_size,
        },
        f"{target} ({target.stat().st_size} bytes)",
    )


def cmd_url(args: argparse.Namespace) -> None:
    link = Api.from_config().call("GET", f"/images/{args.id}/download")
    _out(args, link, link["url"])


def cmd_rm(args: argparse.Namespace) -> None:
    api = Api.from_config()
    for image_id in args.ids:
        api.call("DELETE", f"/images/{image_id}")
    _out(args, {"deleted": args.ids}, f"deleted {len(args.ids)}")


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="images", description="Client for the image service.")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    login = command("login", "save the service URL and your token")
    login.add_argument("--url", default="http://localhost:8080")
    login.add_argument("--token", help="bearer token (else IMAGES_TOKEN, else stdin)")
    login.set_defaults(run=cmd_login)
    upload = command("upload", "upload image files")
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument("--tag", action="append", default=[], help="repeat for more tags")
    upload.add_argument("--title")
    upload.add_argument(
        "--parallel", type=int, default=DEFAULT_PARALLEL, help="uploads in flight at once"
    )
    upload.set_defaults(run=cmd_upload)
    ls = command("ls", "list your images, newest first")
    ls.add_argument("--type", help="an extension (jpg, png, heic, ...) or a content type")
    ls.add_argument("--tag")
    ls.add_argument("--all", action="store_true", help="every page, not just the first")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(run=cmd_ls)
    get = command("get", "download an image")
    get.add_argument("id")
    get.add_argument("-o", "--output", help="file to write (default: its original name)")
    get.add_argument("--force", action="store_true", help="overwrite an existing file")
    get.add_argument(
        "--variant",
        default="original",
        help="the uploaded bytes, or a variant the service makes, by name (thumb, preview, "
        "and any it is configured with; default: original)",
    )
    get.set_defaults(run=cmd_get)
    url = command("url", "print a short-lived download URL")
    url.add_argument("id")
    url.set_defaults(run=cmd_url)
    rm = command("rm", "delete images")
    rm.add_argument("ids", nargs="+", metavar="ID")
    rm.set_defaults(run=cmd_rm)
    return top


def main(argv: list[str] | None = None) -> NoReturn:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
