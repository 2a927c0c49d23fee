"""The running suite the system tests share: started once a session (a few minutes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.models.triton_server import free_port
from shared.runtime.catalog import ensure_demo_store, wait_for_intent
from shared.runtime.suite import Suite

PRODUCTS = 2000


@pytest.fixture(scope="session")
def suite(exported_model_repository: Path, tmp_path_factory) -> Iterator[Suite]:
    """`make run`'s launcher on free ports with a 2,000-product synthetic demo store."""
    state = tmp_path_factory.mktemp("suite-state")
    os.environ["SHOPSENSE_STATE_DIR"] = str(state)  # ensure_demo_store writes its files here
    # The services export their traces where `shopsense observe` (README) listens; the
    # commands get the address through client_env, which copies this environment.
    os.environ["SHOPSENSE_OTLP_ENDPOINT"] = f"127.0.0.1:{free_port()}"
    running = Suite(
        state=state,
        model_repository=exported_model_repository,
        ephemeral_ports=True,
        extra_env={
            "SHOPSENSE_INTENT_REFRESH_S": "0.5",
            "SHOPSENSE_GATEWAY_REFRESH_S": "0.5",
            "SHOPSENSE_TOKEN_SECRET": "system-test",
            "SHOPSENSE_OTLP_ENDPOINT": os.environ["SHOPSENSE_OTLP_ENDPOINT"],
        },
    )
    with running:
        running.demo_products = PRODUCTS
        running.demo_folder = ensure_demo_store(running.address("retrieval"), PRODUCTS, 7)
        wait_for_intent(running.address("intent"), running.address("retrieval"))
        yield running
    os.environ.pop("SHOPSENSE_STATE_DIR", None)
    os.environ.pop("SHOPSENSE_OTLP_ENDPOINT", None)
