"""The embedded AWS emulator behind `make run`: moto's server, in this process."""

import os
import socket

from app.config import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_embedded_aws(settings: Settings) -> Settings:
    """Start moto on a free loopback port; return settings that point at it."""
    # moto is a `local` extra, absent from the Lambda image: import it only here.
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    # Any credentials do for moto; without some, botocore refuses to sign at all.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "embedded")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "embedded")
    port = free_port()
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    return settings.model_copy(update={"aws_endpoint_url": f"http://127.0.0.1:{port}"})
