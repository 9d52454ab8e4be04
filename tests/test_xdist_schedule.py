"""The workers' order of test files (tests/xdist_schedule.py): heaviest first, every
``exclusive`` module in one unit, xdist's own order among files of equal weight."""

from __future__ import annotations

from collections import OrderedDict

from tests import xdist_schedule
from tests.xdist_schedule import EXCLUSIVE, LongestFirst


class _Node:
    def __init__(self) -> None:
        self.sent: list[list[int]] = []

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.append(indexes)


def test_heaviest_unit_first_and_exclusive_modules_together(monkeypatch) -> None:
    monkeypatch.setattr(xdist_schedule, "weights", lambda: {
        "tests/test_light.py": 1.0, "tests/test_heavy.py": 50.0,
        "tests/serve/test_soak.py": 30.0, "tests/serve/test_serve_run.py": 40.0})
    collection = ["tests/test_light.py::a", "tests/test_unknown.py::b",
                  "tests/serve/test_soak.py::c", "tests/test_heavy.py::d",
                  "tests/serve/test_serve_run.py::e", "tests/test_unknown2.py::f"]
    sched = object.__new__(LongestFirst)
    assert sched._split_scope("tests/serve/test_soak.py::c") == EXCLUSIVE  # marked
    assert sched._split_scope("tests/test_heavy.py::d") == "tests/test_heavy.py"
    sched.workqueue = OrderedDict()
    for nodeid in collection:
        sched.workqueue.setdefault(sched._split_scope(nodeid), {})[nodeid] = False
    assert sched._weight(EXCLUSIVE) == 70.0
    node = _Node()
    sched.assigned_work, sched.registered_collections = {}, {node: collection}
    order = []
    while sched.workqueue:
        sched._assign_work_unit(node)
        order.append(sorted(collection[i] for i in node.sent[-1]))
    assert order == [["tests/serve/test_serve_run.py::e", "tests/serve/test_soak.py::c"],
                     ["tests/test_heavy.py::d"], ["tests/test_light.py::a"],
                     ["tests/test_unknown.py::b"], ["tests/test_unknown2.py::f"]]
