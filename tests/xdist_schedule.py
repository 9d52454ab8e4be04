"""The order in which pytest-xdist's two workers take the test files: longest first, and
the ``exclusive`` modules together.

xdist's ``--dist loadfile`` hands out whole files in order of how many tests each has, so
the files with one long test (the soak, ``serve run``, the Ray pipeline) came last, and
one worker ran them alone at the end while the other sat idle. The ``exclusive`` modules
also take a lock (tests/conftest.py): handed to both workers at once, one waited for the
other. Here a file's weight is its measured seconds (``tests/durations.json``, refreshed
with ``pytest --record-durations``; a file not listed weighs nothing and keeps xdist's
order among the light ones), and every exclusive module is one work unit, run back to back
by one worker.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

DURATIONS = Path(__file__).parent / "durations.json"
#: The one work unit that holds every module marked ``exclusive``.
EXCLUSIVE = "exclusive modules"
ROOT = Path(__file__).parent.parent


@functools.cache
def is_exclusive(path: str) -> bool:
    """Whether the module at ``path`` (relative to the root) is marked ``exclusive``: read
    from its text, since the controller never imports test modules."""
    try:
        return "pytest.mark.exclusive" in (ROOT / path).read_text()
    except OSError:
        return False


@functools.cache
def weights() -> dict[str, float]:
    """Seconds per file; none without the file (a broken one fails the run, loudly)."""
    try:
        text = DURATIONS.read_text()
    except OSError:
        return {}
    return {k: float(v) for k, v in json.loads(text).items()}


class LongestFirst(LoadScopeScheduling):
    """``--dist loadfile`` with the exclusive modules as one unit, heaviest unit first."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return EXCLUSIVE if is_exclusive(path) else path

    def _weight(self, scope: str) -> float:
        w = weights()
        if scope == EXCLUSIVE:
            return sum(v for k, v in w.items() if is_exclusive(k))
        return w.get(scope, 0.0)

    def _assign_work_unit(self, node: Any) -> None:
        heaviest = max(self.workqueue, key=self._weight)  # the first of equals: xdist's
        self.workqueue.move_to_end(heaviest, last=False)
        super()._assign_work_unit(node)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test file's seconds to {DURATIONS.name} (the order "
                          "in which xdist's workers take files)")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") == "loadfile":
        return LongestFirst(config, log)
    return None


_seconds: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.getoption("record_durations") and not hasattr(session.config,
                                                                    "workerinput"):
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in _seconds.most_common()},
                                        indent=1) + "\n")
