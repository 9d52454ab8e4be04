"""Schemathesis (pinned) against the served /openapi.json, every operation, every check
(benchmarks/fuzz.py; the long run is ``python -m benchmarks.fuzz``): no 5xx, every
status code, body, content type and header as documented, at least 2,000 generated
cases, and the app ready and live afterwards."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import missing

pytestmark = pytest.mark.cluster

#: Fuzzing-phase examples per operation: with the coverage and stateful phases about
#: 2,500 cases (2,029 at 40), about 20 s here.
EXAMPLES = 50
MIN_CASES = 2000


def test_schemathesis_finds_nothing(app_url):
    if shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None:
        missing("schemathesis", "not installed in this environment (pip install -e '.[dev]')")
    from benchmarks.fuzz import run_fuzz

    result = run_fuzz(app_url, examples=EXAMPLES, seed=0)
    print(f"schemathesis: {result.total} cases, {len(result.failures)} failures, "
          f"{result.seconds:.0f} s")
    assert result.total >= MIN_CASES, (result.total, result.output_tail[-3000:])
    assert not result.failures, ("\n".join(
        f"{f['code']} {f['title']} x{f['count']}: {', '.join(f['operations'][:6])}"
        for f in result.failures) + "\n" + result.output_tail[-4000:])
    assert result.healthy_after, "/readyz or /healthz not 200 after the fuzzing"
