"""`python -m app.local --port 5000`: the embedded emulator alone (the tests use it)."""

from app.local.server import main

main()
