"""Logging set-up shared by the workflow scripts and the command line."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from vapipe.errors import InputError


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to `log_file` (a Snakemake rule's log) when given, else to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_file, mode="w")]
    logging.basicConfig(
        level=level,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("urllib3", "httpx", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def workflow_step(log_file: str | Path | None):
    """Run one workflow step: log to its file; a known input problem becomes one clear line.

    Input errors (which name the offending file or key) exit with status 1 and a single ``ERROR``
    line instead of a traceback; anything else is a bug and still raises in full.
    """
    setup_logging(log_file)
    try:
        yield
    except InputError as error:
        logging.getLogger("vapipe").error("%s", error)
        raise SystemExit(f"vapipe: {error}") from None
