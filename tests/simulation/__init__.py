"""A deterministic simulation of the image service (issue 19): the real service graph
over moto in-process, driven by Hypothesis through random histories of clients, S3's
notifications, a simulated queue, the worker, the sweep, a simulated malware scanner,
faults at any single AWS call, interleavings and time, checked after every step
against the invariants in invariants.py. docs/simulation.md describes it."""
