"""ServeRun's one retry: only when Ray's node did not register in its fixed 30 s."""

from __future__ import annotations

import pytest

from edge_allocator.runtime import serverun
from edge_allocator.runtime.serverun import ServeRun


def _tries(monkeypatch: pytest.MonkeyPatch, errors: list[type[Exception]]) -> list[str]:
    calls: list[str] = []

    def once(self: ServeRun) -> float:
        calls.append("start")
        if errors:
            raise errors.pop(0)("exited with 1")
        return 1.5

    monkeypatch.setattr(ServeRun, "_start_once", once)
    monkeypatch.setattr(ServeRun, "_reap_tree", lambda self: calls.append("reap"))
    return calls


def test_a_node_start_timeout_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _tries(monkeypatch, [serverun._NodeStartTimeout])
    assert ServeRun().start() == 1.5
    assert calls == ["start", "reap", "start"]


def test_other_failures_and_a_second_timeout_are_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _tries(monkeypatch, [RuntimeError])
    with pytest.raises(RuntimeError):
        ServeRun().start()
    assert calls == ["start"]
    calls = _tries(monkeypatch, [serverun._NodeStartTimeout, serverun._NodeStartTimeout])
    with pytest.raises(serverun._NodeStartTimeout):
        ServeRun().start()
    assert calls == ["start", "reap", "start"]
