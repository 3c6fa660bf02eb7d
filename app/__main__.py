"""`python -m app COMMAND`: serve, worker, token USER, create-resources, sweep,
reconcile USER, redrive, backfill-variants, rescan. Every command builds what it needs
through app/composition.py."""

import argparse
import ipaddress
import json
import logging
import signal
import sys
import threading
from dataclasses import asdict

from pydantic import SecretStr, ValidationError

from app.composition import Services, build
from app.config import DEV_JWT_SECRET, KEEP_ALIVE_SECONDS, Settings
from app.domain.errors import ServiceError
from app.http.auth import issue_token
from app.logs import configure_logging
from app.storage.cdn import CdnKeyError
from app.storage.clients import AwsClients
from app.storage.resources import ensure_resources

DEMO_USER = "demo"


def _with_dev_secret(settings: Settings) -> Settings:
    if settings.jwt_secret is not None:
        return settings
    print("! IMAGES_JWT_SECRET is not set: using the development secret", file=sys.stderr)
    return settings.model_copy(update={"jwt_secret": SecretStr(DEV_JWT_SECRET)})


def _development(settings: Settings) -> bool:
    secret = settings.jwt_secret
    return secret is None or secret.get_secret_value() == DEV_JWT_SECRET


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def serve(settings: Settings, fresh: bool = False) -> None:
    import uvicorn  # noqa: PLC0415 - only `serve` needs the server

    from app.http.app import create_app  # noqa: PLC0415

    development = _development(settings)
    if development and not _loopback(settings.host):
        # Anyone who reads this repository can mint tokens for the development secret.
        sys.exit(
            f"Refusing to serve on {settings.host} with the development secret: "
            "set IMAGES_JWT_SECRET (32 bytes or more), or serve on 127.0.0.1"
        )
    settings = _with_dev_secret(settings)
    if "cors_origins" not in settings.model_fields_set:
        # The gallery's origin must be allowed to PUT to the bucket: whatever port we use.
        settings = settings.model_copy(
            update={
                "cors_origins": (
                    f"http://localhost:{settings.port}",
                    f"http://127.0.0.1:{settings.port}",
                )
            }
        )
    embedded = None
    if not settings.uses_custom_endpoints:
        from app.local.server import start_embedded_aws  # noqa: PLC0415
        from app.local.state import DataDirectoryError  # noqa: PLC0415

        try:
            embedded = start_embedded_aws(settings, fresh)
        except DataDirectoryError as exc:
            sys.exit(str(exc))
        settings = embedded.settings
    services = build(settings)
    if services.storage.cdn is not None:
        try:
            services.storage.cdn.check()  # a wrong key stops it here, not at a first page
        except (CdnKeyError, OSError) as exc:
            sys.exit(f"Refusing to serve: the CDN's private key cannot be used: {exc}")
    ensure_resources(services.clients, settings)
    if embedded is not None:
        restored = embedded.restore()
        print(
            f"Embedded AWS emulator (moto): {settings.aws_endpoint_url}, kept in "
            f"{settings.data_dir}/ ({restored.items} items, {restored.objects} objects, "
            f"{restored.messages} messages restored; `make run ARGS=--fresh` starts empty)",
            flush=True,
        )
    print(_scanning(services), flush=True)  # before the worker: it refuses without clamd
    # The worker (thumbnails, previews, auto-confirm) in this process: no second terminal.
    from app.pipeline.worker import start_in_background  # noqa: PLC0415 - Pillow: serving only

    start_in_background(services.worker, services.storage.queue, settings)
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"Image service: {base}  (gallery: {base}/, OpenAPI: {base}/docs)\n"
        f"S3: {settings.s3_endpoint}  DynamoDB: {settings.dynamodb_endpoint}",
        flush=True,
    )
    if settings.cdn_url is not None:
        cookies = "with signed cookies" if settings.cdn_cookies else "without cookies"
        print(f"Reading through CloudFront: {settings.cdn_url} ({cookies})", flush=True)
    # A demo token only for the development secret: with a real one, a token printed to
    # a terminal (or a log collector) would be a working credential.
    token = issue_token(settings, DEMO_USER, ttl_seconds=7 * 24 * 3600) if development else None
    if token:
        print(
            f"Token for user '{DEMO_USER}' (7 days, development secret):\n"
            f"  export TOKEN={token}\n"
            f'  curl -H "Authorization: Bearer $TOKEN" {base}/images',
            flush=True,
        )
    app = create_app(services=services, demo_token=token)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def _scanning(services: Services) -> str:
    """What uploads are scanned with, said at start; or stop, saying why it cannot."""
    from app.pipeline.clamd_daemon import ClamdNotStarted  # noqa: PLC0415
    from app.pipeline.scanning import ScannerUnavailable  # noqa: PLC0415

    settings = services.settings
    if settings.scan == "off":
        return "Malware scanning: off (IMAGES_SCAN=clamav turns it on)"
    if settings.scan == "guardduty":
        return "Malware scanning: GuardDuty's verdicts, as they reach the uploads queue"
    try:
        scanner = services.scanner
        engine = scanner.engine() if scanner is not None else "none"
    except (ClamdNotStarted, ScannerUnavailable) as exc:
        sys.exit(f"Refusing to start: {exc}")
    where = (
        settings.clamd or f"its own clamd on {settings.clamav_database or 'the system database'}"
    )
    return f"Malware scanning: {engine} ({where}); nothing is served before it is clean"


def work(settings: Settings) -> None:
    """The worker alone (the compose service), until SIGTERM or Ctrl-C."""
    from app.pipeline.worker import poll  # noqa: PLC0415 - only the worker needs Pillow

    configure_logging(settings.log_level)
    stop = threading.Event()

    def terminate(*_: object) -> None:
        # At once, even in the middle of a 20-second long poll: a message being worked on
        # is not deleted, so it comes back after its visibility timeout (safe to repeat).
        stop.set()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    services = build(settings)
    print(_scanning(services), flush=True)
    print(f"Worker polling {settings.queue} (S3: {settings.s3_endpoint or 'AWS'})", flush=True)
    try:
        poll(services.worker, services.storage.queue, settings, stop)
    except KeyboardInterrupt:
        stop.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    serve_command = commands.add_parser(
        "serve", help="serve the API (embedded emulator unless AWS_ENDPOINT_URL)"
    )
    serve_command.add_argument(
        "--fresh", action="store_true", help="empty the embedded emulator's data first"
    )
    commands.add_parser("worker", help="make variants of uploads, polling the queue until stopped")
    token = commands.add_parser("token", help="print a bearer token for USER")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    commands.add_parser("create-resources", help="create bucket and table; safe to repeat")
    sweep = commands.add_parser("sweep", help="finish abandoned uploads and stalled deletes")
    sweep.add_argument("--seconds", type=float, help="time budget (default: until done)")
    reconcile = commands.add_parser("reconcile", help="recount USER's usage and fix drift")
    reconcile.add_argument("user")
    redrive = commands.add_parser(
        "redrive", help="move the uploads the worker gave up on back to its queue"
    )
    redrive.add_argument("--most", type=int, default=1000, help="at most this many messages")
    backfill = commands.add_parser(
        "backfill-variants",
        help="have the worker make the variants images lack (new or changed definitions)",
    )
    backfill.add_argument("--most", type=int, default=10_000, help="at most this many images")
    rescan = commands.add_parser(
        "rescan", help="have the worker scan served images again (after a definitions update)"
    )
    rescan.add_argument("--most", type=int, default=10_000, help="at most this many images")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        settings = Settings()
    except ValidationError as exc:
        sys.exit(f"The configuration is not valid:\n{exc}")
    if args.command == "token":
        print(issue_token(_with_dev_secret(settings), args.user, args.ttl))
    elif args.command == "create-resources":
        ensure_resources(AwsClients(settings), settings)
        print(f"bucket {settings.bucket} and table {settings.table} are ready")
    elif args.command == "worker":
        work(settings)
    elif args.command == "serve" or args.command is None:
        serve(settings, fresh=getattr(args, "fresh", False))
    else:
        try:
            print(json.dumps(_maintain(build(settings), args)))
        except ServiceError as exc:  # said as the API says it, never a traceback
            sys.exit(f"{args.command}: {exc.detail} ({exc.code})")


def _maintain(services: Services, args: argparse.Namespace) -> dict[str, object]:
    """The upkeep commands: each a bounded, resumable run whose report is printed."""
    maintenance = services.maintenance
    if args.command == "sweep":
        return asdict(maintenance.sweep(args.seconds))
    if args.command == "reconcile":
        result = maintenance.reconcile(args.user)
        return {**asdict(result), "drift": result.drift}
    if args.command == "redrive":
        return {"moved": services.storage.queue.redrive(args.most)}
    if args.command == "rescan":
        return asdict(maintenance.rescan(args.most))
    return asdict(maintenance.backfill(args.most))


if __name__ == "__main__":
    main()
