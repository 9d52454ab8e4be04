"""ServeRun's retries: only when Ray's node did not register in its fixed 30 s, up to
NODE_START_TRIES starts in all."""

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


def test_a_node_start_timeout_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _tries(monkeypatch, [serverun._NodeStartTimeout])
    assert ServeRun().start() == 1.5
    assert calls == ["start", "reap", "start"]
    calls = _tries(monkeypatch, [serverun._NodeStartTimeout] * 2)
    assert ServeRun().start() == 1.5
    assert calls == ["start", "reap", "start", "reap", "start"]


def test_other_failures_and_the_last_timeout_are_raised(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _tries(monkeypatch, [RuntimeError])
    with pytest.raises(RuntimeError):
        ServeRun().start()
    assert calls == ["start"]
    calls = _tries(monkeypatch, [serverun._NodeStartTimeout] * serverun.NODE_START_TRIES)
    with pytest.raises(serverun._NodeStartTimeout):
        ServeRun().start()
    assert calls == ["start", "reap"] * (serverun.NODE_START_TRIES - 1) + ["start"]


def test_only_the_failures_of_a_loaded_machine_are_retried() -> None:
    """What Ray and Serve print when the machine was too loaded to start them in time;
    anything else (a traceback of ours, Serve's other errors) is not retried."""
    node = ("Exception: The current node timed out during startup. This could happen "
            "because some of the raylet failed to startup or the GCS has become overloaded.")
    haproxy = ("ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing "
               "this task.\n\tclass_name: HAProxyManager\n\tactor_id: c51e\n"
               "The actor is dead because it was killed by `ray.kill`.")
    assert serverun.load_failure(node) and serverun.load_failure(haproxy)
    assert not serverun.load_failure("class_name: ServeReplica:app:Ingress\n"
                                     "The actor is dead because it was killed by `ray.kill`.")
    assert not serverun.load_failure("ValueError: models_dir does not exist")
