"""Periodic progress lines for long extraction loops (a long Aff-Wild2 trial takes minutes)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("vapipe.features.extract")


class Progress:
    """Counts work done and logs a rate line at most every `every_seconds`."""

    def __init__(self, label: str, total: float, unit: str = "frames", every_seconds: float = 30.0):
        self.label, self.total, self.unit = label, total, unit
        self.every_seconds = every_seconds
        self.done = 0.0
        self.start = self.last = time.perf_counter()

    def advance(self, amount: float) -> None:
        """Add `amount` units of work; log a line when the last one is old enough."""
        self.done += amount
        now = time.perf_counter()
        if now - self.last >= self.every_seconds:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            log.info(
                "%s: %.0f/%.0f %s (%.0f%%), %.1f %s/s",
                self.label,
                self.done,
                self.total,
                self.unit,
                100.0 * self.done / max(self.total, 1e-9),
                rate,
                self.unit,
            )
