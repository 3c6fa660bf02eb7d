"""`make simulate-mutants`: proof that the simulation (tests/simulation) finds defects.

Each mutant plants one defect in a scratch copy of the repository (this checkout's app/
and tests/, as they are now; never the checkout itself) by an exact text replacement,
then runs the simulation there with `make test`'s budget and seed, and reports whether
it was found, after how many steps and seconds. The first six put back what issue 15
fixed; the last three are mistakes someone could plausibly make next.

An anchor that is not found exactly once stops the script before anything runs: a
refactoring that moves the code must move the mutant with it, or the table would
quietly report on defects that no longer exist.

    python -m bench.mutants                  # every mutant, two at a time
    python -m bench.mutants --only etag-unchecked --jobs 1
    python -m bench.mutants --markdown       # the table for docs/simulation.md
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the simulation imports: the service and the tests' own helpers.
COPIED = ("app", "tests")
GIT = shutil.which("git") or "git"


@dataclass(frozen=True)
class Mutant:
    name: str
    defect: str  # as the table says it
    origin: str  # "issue 15, item n", or "plausible"
    path: str
    old: str
    new: str


MUTANTS = (
    Mutant(
        "etag-unchecked",
        "A refused upload's bytes deleted without the ETag condition",
        "issue 15, item 1",
        "app/storage/objects.py",
        "Bucket=self._bucket, Key=object_key(image_id), IfMatch=etag\n",
        "Bucket=self._bucket, Key=object_key(image_id)\n",
    ),
    Mutant(
        "sweep-discards",
        "The sweep discards bytes PUT in time (deadline passed, nobody confirmed)",
        "issue 15, item 2",
        "app/images/maintenance.py",
        "elif record.status in UNCONFIRMED and self._confirm_late(record, report):",
        "elif record.status in UNCONFIRMED and False:",
    ),
    Mutant(
        "done-by-deadline",
        '"Done" decided by deadlines: an image the sweep released counts as finished',
        "issue 15, item 3",
        "app/pipeline/worker.py",
        "return record.servable and not record.to_make(self._settings.variants)",
        "return record.due_at is None",
    ),
    Mutant(
        "reason-dropped",
        "The rejection reason dropped: confirm answers 'nothing uploaded' (409)",
        "issue 15, item 6",
        "app/images/service.py",
        "                if current.status == Status.REJECTED:\n"
        '                    raise InvalidImage(current.reason or "The uploaded bytes were'
        ' refused")\n',
        "",
    ),
    Mutant(
        "poison-retried",
        "A message of the wrong shape raises (retried, then dead-lettered)",
        "issue 15, item 7",
        "app/pipeline/notifications.py",
        "        if not isinstance(key, str) or not isinstance(etag, str):\n            continue\n",
        "",
    ),
    Mutant(
        "no-request-token",
        "A transaction without its ClientRequestToken",
        "issue 15, item 8",
        "app/storage/transactions.py",
        "                    ClientRequestToken=uuid.uuid4().hex,\n",
        "",
    ),
    Mutant(
        "scanner-down-dropped",
        "A message whose scanner was down is acknowledged, not retried",
        "plausible",
        "app/pipeline/worker.py",
        '                failures.append({"itemIdentifier": message["messageId"]})\n'
        "                self._back_off(message)\n",
        "",
    ),
    Mutant(
        "infected-quota-twice",
        "Deleting an infected image gives its quota back a second time",
        "plausible",
        "app/storage/table.py",
        "images=0 if record.scan.status == ScanStatus.INFECTED else -1,",
        "images=-1,",
    ),
    Mutant(
        "record-before-bytes",
        "A delete removes the record before the bytes",
        "plausible",
        "app/images/deletion.py",
        "    storage.objects.delete(marked)\n    storage.table.delete_record(marked, now)\n",
        "    storage.table.delete_record(marked, now)\n    storage.objects.delete(marked)\n",
    ),
)


def _sources() -> list[Path]:
    """The files to copy: tracked or not yet (but not ignored), as they are now."""
    listed = subprocess.run(
        [GIT, "ls-files", "-z", "--cached", "--others", "--exclude-standard", *COPIED],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [Path(name) for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _copy(into: Path, sources: list[Path]) -> None:
    for source in sources:
        target = into / source
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, target)


def _planted(text: str, mutant: Mutant) -> str:
    found = text.count(mutant.old)
    if found != 1:
        raise SystemExit(
            f"mutant {mutant.name}: its anchor is in {mutant.path} {found} times, not once; "
            f"move the mutant with the code:\n{mutant.old}"
        )
    return text.replace(mutant.old, mutant.new)


def _environment(copy: Path) -> dict[str, str]:
    # The copy first on the path: the checkout is installed editable, and its app/ must
    # not be the one imported.
    return {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}


def _run(mutant: Mutant, sources: list[Path], args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as scratch:
        copy = Path(scratch)
        _copy(copy, sources)
        planted = copy / mutant.path
        planted.write_text(_planted(planted.read_text(), mutant))
        env = _environment(copy)
        imported = subprocess.run(
            [sys.executable, "-c", "import app; print(app.__file__)"],
            cwd=copy,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not Path(imported).is_relative_to(copy):
            raise SystemExit(f"mutant {mutant.name}: the copy imported {imported}")
        report = copy / "report.json"
        command = [sys.executable, "-m", "tests.simulation", "--report", str(report)]
        command += ["--no-shrink"] if not args.shrink else []
        command += ["--seed", str(args.seed)] if args.seed is not None else []
        command += ["--examples", str(args.examples)] if args.examples is not None else []
        began = time.monotonic()
        finished = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, check=False
        )
        seconds = time.monotonic() - began
        if not report.exists():
            raise SystemExit(
                f"mutant {mutant.name}: the simulation did not run\n{finished.stderr[-3000:]}"
            )
        outcome = json.loads(report.read_text())
    first = outcome.get("first_failure")
    return {
        "mutant": mutant.name,
        "defect": mutant.defect,
        "origin": mutant.origin,
        "found": bool(outcome["found"]),
        "steps": first[0] if first else outcome["steps"],
        "seconds": round(first[1], 1) if first else round(seconds, 1),
        "broken": first[2] if first else None,
        "found_by": first[3] if first else None,
        "run_seconds": round(seconds, 1),
        "failure": outcome.get("failure", "").splitlines()[0] if outcome["found"] else None,
        "shrunk": finished.stderr[-8000:] if args.shrink and outcome["found"] else None,
    }


def _markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "| defect | origin | found | by | steps | seconds | broken invariant |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        broken = str(result["broken"] or "").split(":")[0]
        lines.append(
            f"| {result['defect']} (`{result['mutant']}`) | {result['origin']} | "
            f"{'yes' if result['found'] else '**no**'} | {result['found_by'] or '-'} | "
            f"{result['steps']:,} | {result['seconds']} | {f'`{broken}`' if broken else '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutants")
    parser.add_argument("--only", action="append", help="this mutant (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument("--seed", type=int, help="another seed than make test's")
    parser.add_argument("--examples", type=int, help="more histories than make test's")
    parser.add_argument("--shrink", action="store_true", help="print each shrunk history")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and len(mutants) != len(set(args.only)):
        raise SystemExit(f"no such mutant among {[m.name for m in MUTANTS]}")
    for mutant in mutants:  # every anchor checked before anything runs
        _planted((ROOT / mutant.path).read_text(), mutant)
    sources = _sources()
    began = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda m: _run(m, sources, args), mutants))
    for result in results:
        print(
            f"{result['mutant']:<22} {'FOUND' if result['found'] else 'NOT FOUND':<9} "
            f"after {result['steps']:>5} steps, {result['seconds']:>5} s"
            + (f"  {result['broken']}" if result["broken"] else "")
        )
        if result["shrunk"]:
            print(result["shrunk"])
    missed = [r["mutant"] for r in results if not r["found"]]
    print(
        f"{len(results) - len(missed)} of {len(results)} planted defects found "
        f"({time.monotonic() - began:.0f} s)" + (f"; missed: {', '.join(missed)}" if missed else "")
    )
    if args.markdown:
        print(_markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
