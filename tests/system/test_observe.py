"""`shopsense observe` against the running suite (make run's launcher, free ports, the
services exporting traces to the command): one Search's metrics on every service and on
Triton, and its trace through gateway, intent, retrieval and ranking."""

from __future__ import annotations

import re
import subprocess

import pytest

from shared.paths import REPO_ROOT
from shared.runtime.suite import Suite
from tests.support import client_env

pytestmark = pytest.mark.system


def test_observe_prints_the_metrics_and_one_trace_of_one_search(suite: Suite) -> None:
    done = subprocess.run(
        [".venv/bin/shopsense", "observe", "blue sofa"],
        cwd=REPO_ROOT,
        env=client_env(suite),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # The gateway counted the Search (and its latency), each hop its own call.
    search = 'grpc_method="Search",grpc_service="shopsense.search.v1.SearchService"'
    assert re.search(r'grpc_server_handled_total\{grpc_code="OK",' + search, out), out
    assert re.search(r"grpc_server_handling_seconds_count\{" + search, out), out
    for method in ("Classify", "Retrieve", "Rank"):
        assert re.search(rf'grpc_server_handled_total\{{grpc_code="OK",grpc_method="{method}"', out)
    # Triton's own metrics, from its metrics port.
    assert re.search(r'nv_inference_count\{model="text_encoder"', out), out
    # One trace: the gateway's Search span first, each hop's server span under it.
    assert len(re.findall(r"^trace id [0-9a-f]{32}: \d+ spans$", out, re.MULTILINE)) == 1, out
    assert re.search(r"^gateway\s+server\s+/shopsense.search.v1.SearchService/Search", out, re.M)
    for hop, method in (
        ("intent", "/shopsense.intent.v1.IntentService/Classify"),
        ("retrieval", "/shopsense.retrieval.v1.RetrievalService/Retrieve"),
        ("ranking", "/shopsense.ranking.v1.RankingService/Rank"),
    ):
        assert re.search(rf"^\s+{hop}\s+server\s+{re.escape(method)}", out, re.M), out
    # The query's embedding on Triton, a client span of the service that asked for it.
    assert re.search(r"^\s+\w+\s+client\s+triton text_encoder infer", out, re.M), out
    print(out)  # what the operator sees (make test's log keeps it with -s)
