"""The simulated malware scanner (app.pipeline.scanning.Scanner): it flags any bytes
carrying MARKER, and the simulation decides when it is down (ScannerUnavailable: its
verdicts arrive late, once it is up again) or cannot judge (an error verdict, which
the worker retries until scan_attempts, then records as failed)."""

from dataclasses import dataclass

from app.pipeline.scanning import ScannerUnavailable, Verdict

MARKER = b"SIMULATED-MALWARE-SIGNATURE"
ENGINE = "SimScanner 1.0"
SIGNATURE = "Sim.Test.Malware"
STATES = ("up", "down", "erroring")


@dataclass
class SimScanner:
    state: str = "up"
    scans: int = 0
    refusals: int = 0  # scans it was down for, or could not judge

    def examine(self, data: bytes) -> Verdict:
        self.scans += 1
        if self.state == "down":
            self.refusals += 1
            raise ScannerUnavailable("The simulated scanner is down")
        if self.state == "erroring":
            self.refusals += 1
            return Verdict(ENGINE, error="Can't judge: simulated scanner error")
        if MARKER in data:
            return Verdict(ENGINE, signature=SIGNATURE)
        return Verdict(ENGINE)
