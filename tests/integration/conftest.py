"""The one way integration tests start services: the ones a test names, each a real gRPC
server on port 0 built by its own ``create_server`` from its own settings record, wired to
each other's addresses, in dependency order, and SERVING before the test goes on.

    stack = start_stack(["retrieval", "ranking", "intent", "gateway"],
                        triton_url=triton_server.grpc_url, state=tmp,
                        settings={"token_secret": "test-secret", "refresh_s": 0.5})

``settings`` go to every started service whose record has the field (``refresh_s`` to the
gateway and intent alike), ``only`` to one service, ``using`` are a service's
``create_server`` arguments (a fake encoder, a store, a job runner). A service that is not
started is found nowhere (the discard port), never at a default port where a developer's
``make run`` may be listening. Stacks stop when the module ends, or at the end of a
``with`` block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.feedback.server import create_server as create_feedback
from services.gateway.server import create_server as create_gateway
from services.intent.server import create_server as create_intent
from services.ranking.server import create_server as create_ranking
from services.recommend.server import create_server as create_recommend
from services.retrieval.server import create_server as create_retrieval
from services.trainer.server import create_server as create_trainer
from shared.data.catalog import Product
from shared.rpc.server import ServerHandle
from shared.runtime.catalog import upsert_products, wait_for_intent
from shared.runtime.suite import is_serving
from shared.settings import ALL, ServiceSettings
from tests.support import SMALL_STORE, SMALL_STORE_CLASSES, export_untrained, wait_until

# Dependency order: a service starts after those it calls.
# (The recommender reads the feedback store's database, and feedback tells it of erasures.)
START_ORDER = ("retrieval", "ranking", "recommend", "feedback", "intent", "trainer", "gateway")
FACTORIES: dict[str, Callable[..., ServerHandle]] = {
    "retrieval": create_retrieval,
    "ranking": create_ranking,
    "feedback": create_feedback,
    "recommend": create_recommend,
    "intent": create_intent,
    "trainer": create_trainer,
    "gateway": create_gateway,
}
ANY_PORT = "127.0.0.1:0"
# The discard port: nothing answers there.
NOWHERE = "127.0.0.1:9"


@dataclass
class Stack:
    """Running servers by service name, with the settings each was built from."""

    state: Path
    handles: dict[str, ServerHandle] = field(default_factory=dict)
    settings: dict[str, ServiceSettings] = field(default_factory=dict)
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def address(self, service: str) -> str:
        return self.handles[service].address

    def channel(self, service: str) -> grpc.Channel:
        """One channel per service, closed with the stack."""
        if service not in self._channels:
            self._channels[service] = grpc.insecure_channel(self.address(service))
        return self._channels[service]

    def stub(self, service: str, stub_class: Callable[[grpc.Channel], Any]) -> Any:
        return stub_class(self.channel(service))

    def load_catalog(self, products: Sequence[Product]) -> None:
        """Upsert ``products`` through retrieval (every one must be accepted); then, when
        intent runs, wait until it serves this catalog's generation."""
        reply = upsert_products(self.address("retrieval"), products, progress=False)
        assert [r.error for r in reply.results if r.error] == []
        if "intent" in self.handles:
            wait_for_intent(self.address("intent"), self.address("retrieval"))

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        for service in reversed(list(self.handles)):
            self.handles[service].stop(0.5)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def untrained_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An intent classifier (the small store's classes) and a cross-encoder, each the base
    weights with a fresh seeded head, exported once for every module that serves them."""
    tmp = tmp_path_factory.mktemp("untrained")
    products = SMALL_STORE.products
    return {
        "intent_classifier": export_untrained(
            tmp, "intent", products, seed=11, kind="intent_classifier", labels=SMALL_STORE_CLASSES
        ),
        "cross_encoder": export_untrained(tmp, "cross", products, seed=11, kind="cross_encoder"),
    }


def settings_of(stack: Stack, service: str, **changes: Any) -> dict[str, Any]:
    """The settings ``service`` of ``stack`` was built with, as ``only`` values for another
    instance of it (on a port of its own) wired like it, with ``changes``."""
    built = stack.settings[service]
    values = {name: getattr(built, name) for name, _ in built.options()}
    return {**values, "listen": ANY_PORT, **changes}


def _settings_for(
    service: str,
    running: Mapping[str, str],
    triton_url: str,
    state: Path,
    common: Mapping[str, Any],
    own: Mapping[str, Any],
) -> ServiceSettings:
    record = ALL[service]
    fields = {name for name, _ in record.options()}
    given: dict[str, Any] = {"listen": ANY_PORT, "triton_url": triton_url, "state_dir": state}
    for other in FACTORIES:
        given[f"{other}_target"] = running.get(other, NOWHERE)
    given.update(common)
    given.update(own)
    return record.load(**{name: value for name, value in given.items() if name in fields})


@pytest.fixture(scope="module")
def start_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Stack]]:
    """``start_stack(services, triton_url=..., state=..., settings=..., only=..., using=...)``:
    see the module docstring."""
    stacks: list[Stack] = []

    def start(
        services: Sequence[str],
        *,
        triton_url: str = NOWHERE,
        state: Path | None = None,
        settings: Mapping[str, Any] | None = None,
        only: Mapping[str, Mapping[str, Any]] | None = None,
        using: Mapping[str, Mapping[str, Any]] | None = None,
        serving_timeout_s: float = 120.0,
    ) -> Stack:
        unknown = set(services) - set(FACTORIES) | set(only or {}) - set(services)
        assert not unknown, f"unknown or unstarted services: {sorted(unknown)}"
        stack = Stack(state or tmp_path_factory.mktemp("state"))
        # The trainer reads datasets from any of the session's temporary folders.
        settings = {"data_root": (tmp_path_factory.getbasetemp(),), **(settings or {})}
        stacks.append(stack)
        running: dict[str, str] = {}
        try:
            for service in (s for s in START_ORDER if s in services):
                built = _settings_for(
                    service,
                    running,
                    triton_url,
                    stack.state,
                    settings,
                    (only or {}).get(service, {}),
                )
                handle = FACTORIES[service](built, **(using or {}).get(service, {}))
                stack.settings[service] = built
                stack.handles[service] = handle
                running[service] = handle.address
            for service, handle in stack.handles.items():
                wait_until(
                    lambda h=handle: is_serving(h.address),
                    f"{service} SERVING",
                    timeout=serving_timeout_s,
                )
        except BaseException:
            stack.stop()
            raise
        return stack

    yield start
    for stack in reversed(stacks):
        stack.stop()
