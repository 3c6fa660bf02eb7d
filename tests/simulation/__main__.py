"""`python -m tests.simulation`: run the simulation outside pytest (`make simulate`, and
the mutant script in its copies of the repository).

    python -m tests.simulation                      # make test's budget: every fault
                                                    # point, then random histories
    python -m tests.simulation --examples 1000 --steps 100 --jobs 2
    python -m tests.simulation --seed 7 --report out.json --no-shrink
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

from tests.simulation.machine import BUDGET_EXAMPLES, BUDGET_STEPS, SEED


def _quiet_logs() -> None:
    """The service logs every fault it survives: thousands per run, none of them news."""
    import logging  # noqa: PLC0415

    logging.disable(logging.CRITICAL)


def _one(args: argparse.Namespace) -> int:
    from tests.simulation.machine import run  # noqa: PLC0415 - after the env is set

    warnings.simplefilter("error")  # as pytest runs the suite
    _quiet_logs()
    began = time.monotonic()
    outcome: dict[str, object] = {"seed": args.seed, "examples": args.examples}
    try:
        stats = run(
            args.examples,
            args.steps,
            args.seed,
            shrink=not args.no_shrink,
            fault_points=not args.no_fault_points,
        )
        outcome.update(found=False)
    except Exception as exc:
        from tests.simulation.stats import STATS  # noqa: PLC0415

        stats = STATS
        outcome.update(found=True, failure=f"{type(exc).__name__}: {exc}")
        if not args.report:
            raise
        # Reported, not raised: the broken invariant, the trace and the shrunk history
        # (Hypothesis attaches it to the exception) still go to the terminal.
        traceback.print_exception(exc, limit=0, file=sys.stderr)
    outcome.update(
        steps=stats.steps,
        ran_examples=stats.examples,
        seconds=round(time.monotonic() - began, 1),
        first_failure=stats.first_failure,
    )
    if args.report:
        Path(args.report).write_text(json.dumps(outcome, indent=1))
    print(json.dumps({k: v for k, v in outcome.items() if k != "failure"}))
    return 0


def _jobs(args: argparse.Namespace) -> int:
    """Split the examples over processes, each its own seed (seed, seed+1, ...)."""
    began = time.monotonic()
    share = -(-args.examples // args.jobs)
    reports = [Path(f".simulation-{os.getpid()}-{n}.json") for n in range(args.jobs)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.simulation",
                "--examples",
                str(share),
                "--steps",
                str(args.steps),
                "--seed",
                str(args.seed + n),
                "--report",
                str(report),
            ]
            + (["--no-shrink"] if args.no_shrink else [])
            # The fault points are the same in every process: the first runs them.
            + (["--no-fault-points"] if args.no_fault_points or n else []),
        )
        for n, report in enumerate(reports)
    ]
    codes = [child.wait() for child in children]
    outcomes = [json.loads(report.read_text()) for report in reports if report.exists()]
    for report in reports:
        report.unlink(missing_ok=True)
    steps = sum(int(o["steps"]) for o in outcomes)
    found = [o for o in outcomes if o.get("found")]
    for outcome in found:
        print(f"seed {outcome['seed']} FOUND: {outcome['failure']}", file=sys.stderr)
    print(
        f"simulation: {steps} steps in {sum(int(o['ran_examples']) for o in outcomes)} "
        f"histories, {args.jobs} processes, {time.monotonic() - began:.0f} s: "
        + ("FAILED" if found or any(codes) else "every invariant held")
    )
    return 1 if found or any(codes) else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation")
    parser.add_argument("--examples", type=int, default=BUDGET_EXAMPLES)
    parser.add_argument("--steps", type=int, default=BUDGET_STEPS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report", help="write the outcome as JSON here (and exit 0)")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument(
        "--no-fault-points", action="store_true", help="random histories only (faultpoints.py)"
    )
    args = parser.parse_args()
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_SESSION_TOKEN",
    ):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    return _jobs(args) if args.jobs > 1 else _one(args)


if __name__ == "__main__":
    sys.exit(main())
