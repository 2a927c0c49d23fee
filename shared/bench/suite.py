"""`make bench`: the running suite against the same pipeline in one process (the floor).

Measures, in one run on this machine:
- Search through the gateway at concurrency 1 and 8: p50, p99, throughput, and the median
  time of each hop (the gateway reports them in the ``x-shopsense-timings`` trailer);
- the text encoder through Triton at batch 1 and 32 (and in-process onnxruntime);
- the floor: embed, classify, retrieve and rank (cross-encoder included) the same queries
  in this process with the same model versions on the same engines, the same catalog
  file, scorer and blend, no RPC; and the suite-to-floor ratio;
- the cost of security: Search at concurrency 1 and 8 through a second suite started
  here with TLS on every hop (mutual between the services, and to Triton), an API key
  checked by the gateway's auth interceptor and its token bucket (a rate it never
  reaches), on copies of the same databases; p50 and p99 as ratios to the first suite's
  (``--no-security`` skips it).
Uses the running suite if the gateway answers, else starts one. Queries are the synthetic
demo store's (figures are on synthetic data).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.data.wands import load_queries
from shared.paths import state_dir
from shared.rpc.auth import hash_key
from shared.rpc.clients import ClientSecurity, open_channel
from shared.rpc.tls import dev_client_files, dev_service_files, write_dev_certs
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.suite import Endpoints, Suite, running_suite
from shared.settings import ClientSettings, RankingSettings, RetrievalSettings

console = Console(width=160)
TIMINGS_KEY = "x-shopsense-timings"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_gateway(
    target: str,
    queries: Sequence[str],
    concurrency: int,
    seconds: float,
    security: ClientSecurity | None = None,
) -> dict:
    """Closed-loop load: ``concurrency`` clients each sending one search after another
    (over TLS with an API key when ``security``, else the environment, has them)."""
    channel = open_channel(target, security)  # None: this process's environment
    stub = search_service_pb2_grpc.SearchServiceStub(channel)
    latencies: list[float] = []
    hops: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors = 0
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop_at:
            request = pb.SearchRequest(
                query=queries[i % len(queries)],
                user=common_pb2.UserContext(session_id=f"bench-{offset}"),
                page_size=20,
            )
            started = time.perf_counter()
            try:
                _, call = stub.Search.with_call(request, timeout=10)
            except grpc.RpcError:
                with lock:
                    errors += 1
                continue
            elapsed = (time.perf_counter() - started) * 1e3
            timing = dict(call.trailing_metadata() or ()).get(TIMINGS_KEY, "")
            with lock:
                latencies.append(elapsed)
                for part in filter(None, timing.split(",")):
                    hop, _, ms = part.partition("=")
                    hops[hop].append(float(ms))
            i += concurrency

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    wall = time.perf_counter() - began
    channel.close()
    return {
        "n": len(latencies),
        "errors": errors,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "qps": len(latencies) / wall,
        "hops_ms": {hop: statistics.median(v) for hop, v in hops.items()},
    }


class Floor:
    """The suite's pipeline in this process (:class:`LocalPipeline` over the suite's own
    catalog index file): the text encoder version of the index's vectors, the serving
    intent classifier and cross-encoder (or the prototypes and features alone where none
    serves), each on the engine its export chose; the same scorer and blend; no RPC, no
    Triton."""

    def __init__(self, trainer: str, retrieval: str) -> None:
        from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
        from shopsense.retrieval.v1 import retrieval_service_pb2_grpc
        from shopsense.trainer.v1 import trainer_service_pb2 as tpb
        from shopsense.trainer.v1 import trainer_service_pb2_grpc

        from shared.paths import triton_model_repository
        from shared.training.offline_eval import LocalPipeline

        repository = triton_model_repository()
        # The version of the index's vectors, as retrieval serves them.
        with open_channel(retrieval) as channel:
            reply = retrieval_service_pb2_grpc.RetrievalServiceStub(channel).GetReindexStatus(
                rpb.GetReindexStatusRequest(), timeout=10
            )
        text_encoder = reply.status.index_version or "1"
        folders: dict[str, Path | None] = {"intent_classifier": None, "cross_encoder": None}
        with open_channel(trainer) as channel:
            stub = trainer_service_pb2_grpc.TrainerServiceStub(channel)
            for model in folders:
                reply = stub.ListModelVersions(
                    tpb.ListModelVersionsRequest(model=model), timeout=10
                )
                if reply.serving_version:
                    folders[model] = repository / model / str(reply.serving_version)
        self.versions = {
            "text_encoder": text_encoder,
            **{m: (f.name if f else "none") for m, f in folders.items()},
        }
        self.pipeline = LocalPipeline(
            [],
            repository / "text_encoder" / text_encoder,
            folders["intent_classifier"],
            folders["cross_encoder"],
            # The ranking service's depth and the retrieval service's catalog file.
            rerank_depth=RankingSettings.load().rerank_depth,
            catalog_db=RetrievalSettings.load().catalog_db_url,
        )

    def search(self, query: str) -> dict[str, float]:
        timings: dict[str, float] = {}
        self.pipeline.rank(query, timings)
        return timings

    def close(self) -> None:
        self.pipeline.close()


def bench_floor(floor: Floor, queries: Sequence[str], seconds: float) -> dict:
    latencies, hops = [], defaultdict(list)
    stop_at = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < stop_at:
        timing = floor.search(queries[i % len(queries)])
        latencies.append(timing["total"])
        for hop, ms in timing.items():
            hops[hop].append(ms)
        i += 1
    return {
        "n": len(latencies),
        "errors": 0,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "qps": len(latencies) / sum(latencies) * 1e3,
        "hops_ms": {hop: statistics.median(v) for hop, v in hops.items()},
    }


def run(suite: Endpoints, seconds: float) -> tuple[dict[str, dict], list[str]]:
    """The suite's measurements (printed); answers the Search rows and the queries."""
    from shared.bench.encoder import bench_encoder

    gateway, intent, retrieval = suite.gateway, suite.intent, suite.retrieval
    folder = ensure_demo_store(retrieval, DEMO_PRODUCTS, DEMO_SEED, console.print)
    wait_for_intent(intent, retrieval)
    queries = [q.text for q in load_queries(folder)]
    bench_gateway(gateway, queries[:20], 1, 3.0)  # warm up every hop
    rows = {
        "suite, 1 client": bench_gateway(gateway, queries, 1, seconds),
        "suite, 8 clients": bench_gateway(gateway, queries, 8, seconds),
    }
    floor = Floor(suite.trainer, retrieval)
    try:
        bench_floor(floor, queries[:20], 2.0)
        rows["floor (one process), 1 client"] = bench_floor(floor, queries, seconds)
    finally:
        floor.close()
    console.print(
        "models: " + ", ".join(f"{model} {version}" for model, version in floor.versions.items())
    )

    hops = ["embed", "intent", "retrieval", "ranking", "total"]
    table = Table(
        title=f"Search on the SYNTHETIC demo store ({DEMO_PRODUCTS} products), {seconds:.0f} s each"
    )
    for column in (
        "run",
        "searches",
        "errors",
        "p50 ms",
        "p99 ms",
        "searches/s",
        *[f"{h} ms" for h in hops],
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, r in rows.items():
        table.add_row(
            name, str(r["n"]), str(r["errors"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['qps']:.1f}", *[f"{r['hops_ms'].get(h, float('nan')):.1f}" for h in hops],
        )  # fmt: skip
    console.print(table)
    served, base = rows["suite, 1 client"], rows["floor (one process), 1 client"]
    console.print(
        f"suite-to-floor ratio at concurrency 1: p50 {served['p50_ms'] / base['p50_ms']:.2f}x, "
        f"p99 {served['p99_ms'] / base['p99_ms']:.2f}x"
    )
    encoder = bench_encoder(url=suite.triton, seconds=min(seconds, 5.0))
    engine = next(iter(encoder.pop("engine", {"onnxruntime": 1.0})))
    table = Table(title=f"text_encoder: Triton (gRPC, python backend, {engine}) vs in-process")
    for column in ("case", "texts/s", "p50 ms per call"):
        table.add_column(column)
    for case, r in encoder.items():
        table.add_row(
            case,
            f"{r.get('texts_per_s', float('nan')):.1f}",
            f"{r.get('p50_ms', float('nan')):.2f}",
        )
    console.print(table)
    return rows, queries


def secure_environment(folder: Path) -> tuple[dict[str, str], ClientSecurity]:
    """A development CA and certificates, a keys file with one key of scope ``search``
    whose bucket (a million calls a second) never refuses but is taken from on every call;
    the services' environment and the client's security."""
    certs = folder / "certs"
    write_dev_certs(certs)
    key = "sk_bench_" + secrets.token_urlsafe(16)
    entry = {"id": "bench", "sha256": hash_key(key), "scopes": ["search"]}
    entry.update(rate_per_s=1e6, burst=1_000_000)
    (folder / "keys.json").write_text(json.dumps({"keys": [entry]}))
    env = {
        **dev_service_files(certs).environment(),
        "SHOPSENSE_API_KEYS_FILE": str(folder / "keys.json"),
    }
    return env, ClientSecurity(dev_client_files(certs), key)


def copy_databases(source: Path, target: Path) -> None:
    """The state folder's SQLite databases (catalog, feedback, registry), copied with
    SQLite's backup (consistent while a running suite has them open)."""
    target.mkdir(parents=True, exist_ok=True)
    for database in sorted(source.glob("*.db")):
        with sqlite3.connect(database) as src, sqlite3.connect(target / database.name) as dst:
            src.backup(dst)
        src.close()
        dst.close()


def bench_security(
    plain: dict[str, dict], queries: Sequence[str], seconds: float, state: Path
) -> None:
    """Search through a suite with TLS and API keys, against ``plain`` (the same runs
    through the plaintext suite): p50 and p99 ratios at concurrency 1 and 8."""
    from shared.bench.recommend import cpu_flags

    if not (state / "catalog.db").is_file():
        console.print(f"no catalog in {state} (SHOPSENSE_STATE_DIR): TLS comparison skipped")
        return
    with tempfile.TemporaryDirectory(prefix="shopsense-bench-tls-") as tmp:
        folder = Path(tmp)
        env, client = secure_environment(folder)
        copy_databases(state, folder / "state")
        console.print("starting a second suite with TLS and API keys (copies of the databases)")
        with Suite(state=folder / "state", ephemeral_ports=True, extra_env=env) as suite:
            gateway = suite.address("gateway")
            # Warm up every hop (intent builds its prototypes from the catalog at start).
            bench_gateway(gateway, queries[:20], 1, 5.0, client)
            secure = {
                "suite TLS+auth, 1 client": bench_gateway(gateway, queries, 1, seconds, client),
                "suite TLS+auth, 8 clients": bench_gateway(gateway, queries, 8, seconds, client),
            }
    console.print(f"cpu: {cpu_flags()}")
    table = Table(title=f"Search with and without TLS + API keys, {seconds:.0f} s each")
    columns = ("run", "searches", "errors", "p50 ms", "p99 ms", "searches/s")
    columns += ("p50 ratio", "p99 ratio")
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    pairs = {"suite, 1 client": None, "suite, 8 clients": None}
    pairs.update(
        {
            "suite TLS+auth, 1 client": "suite, 1 client",
            "suite TLS+auth, 8 clients": "suite, 8 clients",
        }
    )
    rows = {**plain, **secure}
    for name, base in pairs.items():
        r = rows[name]
        b = rows[base] if base else r
        table.add_row(
            name, str(r["n"]), str(r["errors"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['qps']:.1f}", f"{r['p50_ms'] / b['p50_ms']:.2f}x", f"{r['p99_ms'] / b['p99_ms']:.2f}x",
        )  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each run")
    parser.add_argument(
        "--no-security", action="store_true", help="skip the TLS + API keys comparison"
    )
    args = parser.parse_args(argv)
    with running_suite(ClientSettings.load(), console.print) as suite:
        rows, queries = run(suite, args.seconds)
    # After the first suite, when started here, has stopped: the second has the machine.
    if not args.no_security:
        bench_security(rows, queries, args.seconds, state_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
