"""What a simulation run did: steps and histories, and when it first found something
(the mutant script's steps-to-find). Both halves, the fault points and the random
histories, count into one."""

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    steps: int = 0
    examples: int = 0
    started: float = field(default_factory=time.monotonic)
    first_failure: tuple[int, float, str, str] | None = None  # steps, seconds, what, half
    half: str = "random histories"  # or "fault points", while they run

    def restart(self) -> None:
        self.steps = self.examples = 0
        self.started = time.monotonic()
        self.first_failure = None
        self.half = "random histories"

    def failed(self, exc: BaseException) -> None:
        if self.first_failure is None:
            first_line = str(exc).splitlines()[0] if str(exc) else repr(exc)
            seconds = time.monotonic() - self.started
            self.first_failure = (self.steps, seconds, first_line, self.half)


STATS = Stats()
