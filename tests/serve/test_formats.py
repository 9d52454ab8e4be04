"""/v1/allocate/batch in every body format, through the served app: row JSON, row
msgpack, columnar JSON and packed columnar msgpack give the same decisions and the same
error paths; ``fields`` trims responses."""

from __future__ import annotations

import httpx
import msgpack
import pytest

from tests.test_columnar import _columnar_body, _sim_states

pytestmark = pytest.mark.cluster
MP = {"content-type": "application/msgpack", "accept": "application/msgpack"}


def _post(client: httpx.Client, url: str, body: object, as_msgpack: bool) -> httpx.Response:
    if as_msgpack:
        return client.post(f"{url}/v1/allocate/batch", content=msgpack.packb(body), headers=MP)
    return client.post(f"{url}/v1/allocate/batch", json=body)


def _decisions(r: httpx.Response) -> list[dict]:
    assert r.status_code == 200, r.content[:500]
    if r.headers["content-type"].startswith("application/msgpack"):
        return msgpack.unpackb(r.content)["decisions"]
    return r.json()["decisions"]


def test_every_format_gives_the_same_decisions(app_url, client):
    states = _sim_states(16)
    want = _decisions(_post(client, app_url, {"states": states}, False))
    for body, as_mp in (({"states": states}, True), (_columnar_body(states), False),
                        (_columnar_body(states, packed=True), True)):
        got = _decisions(_post(client, app_url, body, as_mp))
        assert [d["node_id"] for d in got] == [d["node_id"] for d in want]
        assert [d["ranking"] for d in got] == [d["ranking"] for d in want]
        for g, w in zip(got, want):
            assert g["scores"] == pytest.approx(w["scores"], rel=1e-4, abs=1e-4)


def test_fields_return_only_what_was_asked(app_url, client):
    states = _sim_states(4)
    r = client.post(f"{app_url}/v1/allocate/batch", params={"fields": "node_id,confidence"},
                    json={"states": states})
    full = _decisions(_post(client, app_url, {"states": states}, False))
    got = _decisions(r)
    assert [set(d) for d in got] == [{"node_id", "confidence"}] * 4
    assert [d["node_id"] for d in got] == [d["node_id"] for d in full]
    one = client.post(f"{app_url}/v1/allocate?fields=node_id", json=states[0]).json()
    assert one == {"node_id": full[0]["node_id"]}
    bad = client.post(f"{app_url}/v1/allocate/batch?fields=node_id,nope", json={"states": states})
    assert bad.status_code == 422 and bad.json()["details"][0]["loc"] == "fields"


def test_errors_name_the_state_and_node_in_every_format(app_url, client):
    states = _sim_states(3)
    n0 = len(states[0]["nodes"])
    states[1]["nodes"][2]["cpu_util"] = 7
    want = "states.1.nodes.2.cpu_util"
    for body, as_mp in (({"states": states}, False), ({"states": states}, True),
                        (_columnar_body(states), False), (_columnar_body(states), True)):
        r = _post(client, app_url, body, as_mp)
        assert r.status_code == 422, r.content[:300]
        err = msgpack.unpackb(r.content) if as_mp else r.json()
        assert err["details"][0]["loc"] == want, (as_mp, err)
    assert n0 >= 3
    r = client.post(f"{app_url}/v1/allocate/batch", content=b"\xc1",
                    headers={"content-type": "application/msgpack"})
    assert r.status_code == 400 and "msgpack" in r.json()["error"]
    r = client.post(f"{app_url}/v1/allocate/batch", content=b"x",
                    headers={"content-type": "text/csv"})
    assert r.status_code == 415
