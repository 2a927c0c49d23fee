"""The gateway's ranked-result cache: what it keeps, for how long, under which key."""

from __future__ import annotations

from prometheus_client import generate_latest
from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2
from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.cache import ResultCache, cacheable, search_key
from services.gateway.pipeline import ArmRun
from services.gateway.routing import Route
from shared.experiments.assignment import Arm, Experiment, Pipeline
from shared.rpc import metrics

SERVING = {"intent_classifier": "2", "cross_encoder": "3"}


def run(product: str = "p1") -> ArmRun:
    candidate = retrieval_service_pb2.Candidate()
    candidate.product.product_id = product
    return ArmRun(candidates=[candidate], order=[(product, 1.0, [])])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(where: Route | None = None, request: pb.SearchRequest | None = None, **changes) -> tuple:
    arguments = {
        "query": "oak table",
        "k": 100,
        "explain_top": 20,
        "serving": SERVING,
        "index_version": "1",
        "catalog_generation": 7,
        **changes,
    }
    return search_key(
        where or Route(None, [Arm("control", 1.0)]),
        request or pb.SearchRequest(query="oak table"),
        **arguments,
    )


def outcomes() -> dict[str, float]:
    text = generate_latest(metrics.registry("gateway")).decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("shopsense_search_result_cache_total{"):
            name = line.split('outcome="')[1].split('"')[0]
            found[name] = float(line.rsplit(" ", 1)[1])
    return found


def test_a_kept_search_is_served_until_it_expires() -> None:
    clock = Clock()
    cache = ResultCache(entries=10, ttl_s=60.0, clock=clock)
    before = outcomes()
    assert cache.get(key()) is None
    runs = [run()]
    cache.put(key(), runs)
    assert cache.get(key()) is runs
    clock.now += 59.9
    assert cache.get(key()) is runs
    clock.now += 0.2
    assert cache.get(key()) is None and len(cache) == 0
    after = outcomes()
    assert after["hit"] - before.get("hit", 0) == 2
    assert after["miss"] - before.get("miss", 0) == 2


def test_the_least_recently_used_goes_first() -> None:
    cache = ResultCache(entries=2, ttl_s=60.0)
    first, second, third = (key(query=q) for q in ("a", "b", "c"))
    cache.put(first, [run("1")])
    cache.put(second, [run("2")])
    assert cache.get(first) is not None  # first is now the most recently used
    cache.put(third, [run("3")])
    assert cache.get(second) is None
    assert cache.get(first) is not None and cache.get(third) is not None


def test_degraded_failed_or_empty_runs_are_not_kept() -> None:
    cache = ResultCache(entries=10, ttl_s=60.0)
    degraded = run()
    degraded.degraded.ranking = True
    failed = run()
    failed.model_failures.append("intent")
    for runs in ([degraded], [run(), failed], [ArmRun()]):
        assert not cacheable(runs)
        cache.put(key(), runs)
        assert cache.get(key()) is None
    off = ResultCache(entries=0, ttl_s=60.0)
    off.put(key(), [run()])
    assert off.get(key()) is None


def test_the_key_holds_everything_that_decides_the_runs() -> None:
    base = key()
    filtered = pb.SearchRequest(query="oak table")
    filtered.filters.product_classes.append("Dining Tables")
    lexical = pb.SearchRequest(query="oak table")
    lexical.options.retrieval_mode = common_pb2.RETRIEVAL_MODE_LEXICAL
    reversed_arm = Arm("control", 1.0, pipeline=Pipeline(reverse_ranking=True))
    experiment = Experiment("e1", "salt", [Arm("control", 0.5), Arm("treatment", 0.5)])
    changed = [
        key(query="Oak table"),
        key(request=filtered),
        key(request=lexical),
        key(k=200),
        key(explain_top=40),
        key(serving={**SERVING, "cross_encoder": "4"}),  # a publish
        key(index_version="2"),  # a reindex
        key(catalog_generation=8),  # a catalog change
        key(where=Route(None, [reversed_arm])),
        key(where=Route(experiment, [experiment.arms[0]])),
        key(where=Route(experiment, list(experiment.arms))),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # Not in the key: the shopper and the page token (the page's depth is).
    other_shopper = pb.SearchRequest(query="oak table", page_token="abc")
    other_shopper.user.session_id = "someone-else"
    assert key(request=other_shopper) == base
