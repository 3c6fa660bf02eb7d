"""The embedded AWS emulator behind `make run`: moto's server in this process, its state
kept under a data directory so that a gallery survives a restart. Never shipped to
Lambda (moto is a `local` extra)."""
