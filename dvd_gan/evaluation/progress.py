"""Progress lines for long evaluation work, on stderr (stdout stays the result alone).

One line per update, not a redrawn bar: logs of batch jobs and CI keep every line.
"""

import sys
import time

import jax


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """`update(done)` prints 'what: done/total clips, R clips/s, ETA h:mm:ss' (process 0
    only, so a multi-host job prints each line once)."""

    def __init__(self, what: str, total: int, unit: str = "clips"):
        self.what, self.total, self.unit = what, total, unit
        self.start = time.perf_counter()
        self.enabled = jax.process_index() == 0

    def update(self, done: int):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else 0.0
        print(
            f"{self.what}: {done}/{self.total} {self.unit}, {rate:.2f} {self.unit}/s, "
            f"ETA {_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )
