"""The decision explorer (/ui/) in a real browser against `serve run serve_config.yaml`.

Debian's headless chromium, driven by Playwright for Python (``executable_path``). The
service runs with a bearer token, as production does: the page must ask for it and send
it. Each view is clicked through and checked against the API answering the same
request; the browser console must stay free of errors throughout.

Screenshots go to a temporary folder, or to ``$EDGE_ALLOCATOR_SCREENSHOTS`` (the README's
come from ``EDGE_ALLOCATOR_SCREENSHOTS=docs/screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.policies.heuristics import HEURISTIC_NAMES
from edge_allocator.runtime.serverun import SERVE_CONFIG, ServeRun
from tests.conftest import missing

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.exclusive]
TOKEN = "ui-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHROMIUM = "/usr/bin/chromium"
SHADOW_VERSION = "1"  # scores the live hybrid (v2) states in shadow


def chromium() -> str:
    path = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if path is None:
        missing("chromium", "it is not installed (scripts/setup.sh installs Debian's "
                "'chromium' package when run as root)")
    return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("EDGE_ALLOCATOR_SCREENSHOTS")
    folder = PROJECT_ROOT / out if out else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[ServeRun]:
    """The shipped serve_config.yaml with its own decision log, behind a token, and hybrid
    v1 scoring the live hybrid's states in shadow (the Live and Models views show it)."""
    browser = chromium()  # before minutes of start-up: fail or skip at once
    assert browser
    tmp = tmp_path_factory.mktemp("ui")
    raw = yaml.safe_load(SERVE_CONFIG.read_text())
    for d in raw["applications"][0]["deployments"]:
        if "shadow" in d.get("user_config", {}):
            d["user_config"]["shadow"] = {"hybrid": {"version": SHADOW_VERSION}}
        if d["name"] == "Ingress":
            d["user_config"]["database_url"] = f"sqlite:///{tmp / 'log.db'}"
            d["user_config"]["spool_path"] = str(tmp / "spool.jsonl")
    cfg = tmp / "serve_config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_ALLOCATOR_TOKENS", TOKEN)  # inherited by Ray's processes
        run = ServeRun(cfg, command="serve-run", token=TOKEN)
        try:
            run.start()
            yield run
        finally:
            run.stop()


class Console:
    """Errors the page logged or threw; ``allow`` the ones a step causes on purpose."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def take(self) -> list[str]:
        out, self.errors = self.errors, []
        return out


@pytest.fixture(scope="module")
def browser_page(service) -> Iterator[tuple[Any, Console]]:
    from playwright.sync_api import sync_playwright

    console = Console()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: console.errors.append(m.text) if m.type == "error"
                else None)
        page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
        page.goto(f"{service.url}/ui/")
        yield page, console
        browser.close()


@pytest.fixture
def page(browser_page):
    """The shared page, with the token entered and a state decided; every test ends with
    a clean console."""
    page, console = browser_page
    if not page.evaluate(f"sessionStorage.getItem('edge-allocator-token') === '{TOKEN}'"):
        page.fill("#token", TOKEN)
        page.click("#token-form button")
        until(page, "document.querySelectorAll('#model option').length > 1")
    if page.locator("#graph g.node[data-chosen=true]").count() == 0:
        page.click("#tab-decide")
        page.click("#load-sample")
        page.wait_for_selector("#graph g.node[data-chosen=true]")
    yield page
    assert console.take() == []


def api(service: ServeRun, method: str, path: str, body: Any = None,
        params: dict[str, str] | None = None) -> Any:
    r = httpx.request(method, f"{service.url}/{path}", json=body, params=params, headers=AUTH,
                      timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def until(page: Any, expression: str, timeout_s: float = 15,
          again: Callable[[], None] | None = None) -> None:
    """Polls ``expression`` in the page until it is truthy (``page.wait_for_function``
    would evaluate it with eval(), which the page's Content-Security-Policy forbids).
    ``again``, if given, is redone every second meanwhile (a search the server may not
    be able to answer yet)."""
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while not page.evaluate(f"() => {expression}"):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(100)
        if again is not None and time.monotonic() - last >= 1.0:
            again()
            last = time.monotonic()


def decided(page: Any, action: Any) -> None:
    """Run ``action`` (a click that decides) and wait until the page shows the new
    decision: its summary names each decision's id, and the graph, ranking and
    comparison are drawn in the same synchronous step that sets it. (Waiting for a
    chosen node instead passed on the previous decision's graph when the machine was
    slow, and the test then read the previous state.)"""
    before = page.evaluate("() => document.getElementById('decide-summary').textContent")
    action()
    until(page, "document.getElementById('decide-summary').textContent !== "
          f"{json.dumps(before)}", timeout_s=60)


def shown_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(document.getElementById('state-json').value)")


def test_the_page_asks_for_the_token_and_says_why(browser_page, service):
    page, console = browser_page
    page.click("#load-sample")
    page.wait_for_selector("#error:not([hidden])")
    assert "bearer token" in page.inner_text("#error")
    # Two calls were refused: the page's model list, sent at load, and the sample. The
    # first may be answered after the second (another ingress replica), so wait for both
    # before taking them, or a late one lands on the next test's clean console.
    deadline = time.monotonic() + 15
    while sum("401" in e for e in console.errors) < 2:
        assert time.monotonic() < deadline, f"expected two refused calls: {console.errors}"
        page.wait_for_timeout(100)
    assert all("401" in e for e in console.take())  # the refused calls, and nothing else
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    until(page, "document.querySelectorAll('#model option').length > 1")
    assert page.is_hidden("#error")


def test_decide_highlights_the_apis_choice_and_compares_every_policy(page, service, shots):
    page.select_option("#scenario", "synthetic")
    page.fill("#nodes", "14")
    page.fill("#seed", "7")
    decided(page, lambda: page.click("#load-sample"))
    body = shown_state(page)
    assert body == api(service, "GET", "v1/sample",
                       params={"scenario": "synthetic", "nodes": "14", "seed": "7"})
    decision = api(service, "POST", "v1/allocate", body)
    chosen = page.locator("#graph g.node[data-chosen=true]")
    assert chosen.count() == 1 and chosen.get_attribute("data-node-id") == decision["node_id"]
    ranking = page.locator("#ranking tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.nodeId)")
    assert ranking == decision["ranking"]
    served = {m["name"] for m in api(service, "GET", "v1/models")["models"]}
    rows = page.locator("#comparison tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.policy, r.dataset.kind, r.dataset.nodeId])")
    assert {p for p, kind, _ in rows if kind == "model"} == served
    assert [p for p, kind, _ in rows if kind == "heuristic"] == list(HEURISTIC_NAMES)
    for policy, kind, node_id in rows:  # each model's row is that model's own decision
        if kind == "model":
            assert node_id == api(service, "POST", "v1/allocate",
                                  {**body, "model": policy})["node_id"], policy
    page.screenshot(path=str(shots / "decide.png"), full_page=True)


def test_an_edited_node_turns_infeasible_with_its_reason(page, service):
    page.click("#tab-decide")
    target = page.locator("#graph g.node[data-chosen=true]").get_attribute("data-node-id")
    index = shown_state(page)["nodes"].index(
        next(n for n in shown_state(page)["nodes"] if n["node_id"] == target))
    field = page.locator(f"#node-table input[data-index='{index}'][data-field=bandwidth]")
    field.fill("0")
    field.press("Tab")  # change event
    page.click("#decide")
    page.wait_for_selector(f"#graph g.node[data-node-id='{target}'][data-feasible=false]")
    node = page.locator(f"#graph g.node[data-node-id='{target}']")
    assert "unreachable" in (node.locator("title").text_content() or "")
    chosen = page.locator("#graph g.node[data-chosen=true]").get_attribute("data-node-id")
    assert chosen != target
    assert chosen == api(service, "POST", "v1/allocate", shown_state(page))["node_id"]


def test_bad_input_is_explained_in_words(browser_page):
    page, console = browser_page
    page.click("#json-box summary")
    page.fill("#state-json", '{"nodes": [{"cpu_util": "high"}]}')
    page.click("#apply-json")
    page.wait_for_selector("#error:not([hidden])")
    text = page.inner_text("#error")
    assert "422" in text and "nodes.0" in text, text
    page.fill("#state-json", "{not json")
    page.click("#apply-json")
    until(page, "document.getElementById('error').textContent.includes('parse')")
    page.click("#json-box summary")
    page.click("#load-sample")  # back to a valid state
    page.wait_for_selector("#error", state="hidden")
    assert all("422" in e for e in console.take())  # the refused calls, and nothing else


def bars_shown(page: Any, svg_id: str) -> dict[str, float]:
    return dict(page.locator(f"#{svg_id} g.bar").evaluate_all(
        "bars => bars.map(b => [b.dataset.name, Number(b.dataset.value)])"))


def explain_in_page(page: Any, model: str, node_id: str, other: str) -> None:
    page.click("#tab-explain")
    page.select_option("#explain-model", model)
    page.select_option("#explain-node", node_id)
    page.select_option("#explain-other", other)
    page.evaluate("() => document.getElementById('explain-bars').replaceChildren()")
    page.click("#explain")
    page.wait_for_selector("#explain-bars g.bar")


def test_explain_bars_match_the_api(page, service, shots):
    body = shown_state(page)
    for model in ("", "greedy_eft"):  # the default model (gradients), then a heuristic's rule
        req = {**body, "model": model} if model else body
        chosen = api(service, "POST", "v1/explain", req)["decision"]
        node_id, other = chosen["node_id"], chosen["ranking"][1]  # the runner-up: feasible
        explain_in_page(page, model, node_id, other)
        expected = api(service, "POST", "v1/explain",
                       {**req, "node_id": node_id, "compare_to": other})
        want = expected["explanation"]["attributions"][node_id]
        shown = bars_shown(page, "explain-bars")
        assert shown.keys() == want.keys(), model
        for feature, value in want.items():
            assert shown[feature] == pytest.approx(value, rel=1e-6, abs=1e-9), (model, feature)
        assert page.is_visible("#why-not")
        gap = {f"{t['node_id']} \u00b7 {t['feature']}": t["value"]
               for t in expected["comparison"]["top"][:12]}
        assert bars_shown(page, "why-not-bars") == pytest.approx(gap, rel=1e-6, abs=1e-9)
        assert expected["explanation"]["method"] in page.inner_text("#explain-summary")
        if not model:
            page.screenshot(path=str(shots / "explain.png"), full_page=True)


def decisions_shown(page: Any) -> int:
    return int(page.inner_text("#live-cards [data-metric=decisions] .v"))


def test_live_counter_rises_after_requests(page, service, shots):
    page.click("#tab-live")
    page.wait_for_selector("#live-cards [data-metric=decisions]")
    before = decisions_shown(page)
    body = shown_state(page)
    for _ in range(5):
        api(service, "POST", "v1/allocate", body)
    deadline = time.monotonic() + 15
    while decisions_shown(page) < before + 5 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert decisions_shown(page) >= before + 5
    assert page.locator("#live-traffic tbody tr").count() >= 1
    # hybrid v1 in shadow: the Shadow candidates table shows the stats' numbers once the
    # candidate has scored (off the response path, so it may lag the answers)
    until(page, "[...document.querySelectorAll('#live-shadow tbody tr td')].length >= 7 && "
                "Number(document.querySelector('#live-shadow tbody tr td:nth-child(4)')"
                ".innerText) >= 1")
    shadow = api(service, "GET", "v1/stats")["shadow"]
    assert [(t["model"], t["version"]) for t in shadow] == [("hybrid", SHADOW_VERSION)]
    row = page.locator("#live-shadow tbody tr").first.locator("td").all_inner_texts()
    assert row[:2] == ["hybrid", "v" + SHADOW_VERSION]
    assert int(row[3]) >= 1
    assert "Ingress" in page.inner_text("#live-replicas")
    page.screenshot(path=str(shots / "live.png"), full_page=True)


def test_models_show_every_served_versions_manifest(page, service, shots):
    page.click("#tab-models")
    page.wait_for_selector("#models .card")
    served = {(m["name"], m["version"]) for m in api(service, "GET", "v1/models")["models"]}
    until(page, f"document.querySelectorAll('#models .card').length === "
                           f"{len(served)}")
    cards = page.locator("#models .card").evaluate_all(
        "cs => cs.map(c => [c.dataset.model, c.dataset.version])")
    assert {tuple(c) for c in cards} == served
    assert ("hybrid", SHADOW_VERSION) in served  # the candidate is loaded, and labelled
    shadow_card = f"#models .card[data-model='hybrid'][data-version='{SHADOW_VERSION}'] h2"
    assert "shadow candidate" in page.locator(shadow_card).inner_text()
    for name, version in served:
        card = page.locator(f"#models .card[data-model='{name}'][data-version='{version}']")
        rows = card.locator("table.eval tbody tr").count()
        manifest = api(service, "GET", "v1/manifest", params={"model": name, "version": version})
        assert rows == len(manifest["evaluation"]) > 0
        assert card.locator("svg polyline").count() == 1  # the training curve
    page.screenshot(path=str(shots / "models.png"))


def test_decisions_are_searchable_with_their_feedback(page, service, shots):
    decision = api(service, "POST", "v1/allocate", shown_state(page))
    api(service, "POST", "v1/feedback", {"decision_id": decision["decision_id"],
                                         "completion_ms": 321.0, "success": True})
    page.click("#tab-decisions")
    page.fill("#search-id", decision["decision_id"][:28])
    # the decision log writes behind the response (its writer thread batches): on a
    # loaded machine the first search can come before the row is stored, so search
    # again, as a user would, until it shows (a fresh-clone CI run here saw 0 rows)
    page.click("#search")
    until(page, "document.querySelectorAll('#decisions tbody tr').length === 1", 30,
          again=lambda: page.click("#search"))
    row = page.locator(f"#decisions tr[data-decision-id='{decision['decision_id']}']")
    assert "succeeded in 321 ms" in row.inner_text()
    page.fill("#search-id", "")
    page.click("#search")
    until(page, "document.querySelectorAll('#decisions tbody tr').length > 1")
    page.screenshot(path=str(shots / "decisions.png"))


def test_keyboard_and_phone_width(page, shots):
    page.click("#tab-decisions")
    page.keyboard.press("ArrowRight")  # wraps to the first tab
    assert page.evaluate("document.activeElement.id") == "tab-decide"
    assert page.get_attribute("#tab-decide", "aria-selected") == "true"
    page.keyboard.press("End")
    assert page.get_attribute("#tab-decisions", "aria-selected") == "true"
    page.keyboard.press("Home")
    page.keyboard.press("Tab")  # into the panel: the first control of the Decide view
    assert page.evaluate("document.activeElement.id") == "scenario"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(shots / "phone.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
