"""`make bench`: the running suite against the same pipeline in one process (the floor).

Measures, in one run on this machine:
- Search through the gateway at concurrency 1 and 8: p50, p99, throughput, and the median
  time of each hop (the gateway reports them in the ``x-shopsense-timings`` trailer);
- the text encoder through Triton at batch 1 and 32 (and in-process onnxruntime);
- the floor: embed, classify, retrieve and rank (cross-encoder included) the same queries
  in this process with the same model versions on the same engines, the same catalog
  file, scorer and blend, no RPC; and the suite-to-floor ratio;
- the cost of security: Search at concurrency 1 and 8 through two suites started here
  alike on copies of the same databases, one plaintext, one with TLS on every hop
  (mutual between the services, and to Triton) and an API key checked by the gateway's
  auth interceptor and its token bucket (a rate it never reaches), taking turns (ABBA,
  both up); p50 and p99 as ratios (``--no-security`` skips it).
Uses the running suite if the gateway answers, else starts one. Queries are the synthetic
demo store's (figures are on synthetic data). The floor runs at 1 and 8 clients too (threads
of this process), so throughput compares like with like; suite and floor take turns (ABBA,
half the time each), so neither gets the quieter minutes.

``shopsense bench search [--seconds S] [--json OUT]`` (``make bench``) prints the machine
(``shared.bench.machine``) first and writes, with ``--json``, the same figures for a
program: ``runs`` (``name`` suite or floor, ``clients``, ``p50_ms``, ``p99_ms``,
``per_second``, ``searches``, ``errors``, ``hops_ms``), ``secure_runs`` (the suite with TLS
and keys), the ``ratios`` and the ``machine``.
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

from shared.bench.load import percentile
from shared.contracts.search import NO_CACHE
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


def bench_gateway(
    target: str,
    queries: Sequence[str],
    concurrency: int,
    seconds: float,
    security: ClientSecurity | None = None,
    fresh: bool = True,
    timeout_s: float = 10.0,
) -> dict:
    """Closed-loop load: ``concurrency`` clients each sending one search after another
    (over TLS with an API key when ``security``, else the environment, has them). ``fresh``
    asks the gateway not to use its result cache: the pipeline is what is measured;
    ``timeout_s`` is each search's deadline (a late search counts as an error)."""
    channel = open_channel(target, security)  # None: this process's environment
    stub = search_service_pb2_grpc.SearchServiceStub(channel)
    latencies: list[float] = []
    hops: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors = 0
    stop_at = time.perf_counter() + seconds
    metadata = (NO_CACHE,) if fresh else ()

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
                _, call = stub.Search.with_call(request, timeout=timeout_s, metadata=metadata)
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
    return figures(latencies, hops, wall, errors)


def figures(
    latencies: list[float], hops: dict[str, list[float]], wall_s: float, errors: int = 0
) -> dict:
    """One run's row: searches, errors, p50, p99, searches/s and each hop's median; with
    the samples, which ``merged`` pools."""
    return {
        "n": len(latencies),
        "errors": errors,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "qps": len(latencies) / wall_s,
        "hops_ms": {hop: statistics.median(v) for hop, v in hops.items()},
        "latencies_ms": latencies,
        "hop_samples": hops,
        "wall_s": wall_s,
    }


def merged(parts: Sequence[dict]) -> dict:
    """Runs of one kind taken in turns with another kind's (ABBA), as one run."""
    hops: dict[str, list[float]] = defaultdict(list)
    for part in parts:
        for hop, samples in part["hop_samples"].items():
            hops[hop].extend(samples)
    return figures(
        [ms for part in parts for ms in part["latencies_ms"]],
        hops,
        sum(part["wall_s"] for part in parts),
        sum(part["errors"] for part in parts),
    )


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


def bench_floor(floor: Floor, queries: Sequence[str], seconds: float, clients: int = 1) -> dict:
    """Closed-loop load on the floor: ``clients`` threads of this process each searching
    one query after another (the engines' own locks and threads as the services have them)."""
    latencies: list[float] = []
    hops: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            timing = floor.search(queries[i % len(queries)])
            with lock:
                latencies.append(timing["total"])
                for hop, ms in timing.items():
                    hops[hop].append(ms)
            i += clients

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return figures(latencies, hops, time.perf_counter() - began)


# The rows' names: (run, clients) of each, as --json writes them.
SUITE_1, SUITE_8 = "suite, 1 client", "suite, 8 clients"
FLOOR_1, FLOOR_8 = "floor (one process), 1 client", "floor (one process), 8 clients"
HOPS = ["embed", "intent", "retrieval", "ranking", "total"]


def as_run(name: str, row: dict) -> dict:
    """A row as --json writes it: ``name`` (suite or floor), ``clients`` and the figures."""
    kind, clients = name.split(" ")[0].rstrip(","), int(name.rsplit(", ", 1)[1].split()[0])
    return {
        "name": kind,
        "clients": clients,
        "p50_ms": round(row["p50_ms"], 3),
        "p99_ms": round(row["p99_ms"], 3),
        "per_second": round(row["qps"], 3),
        "searches": row["n"],
        "errors": row["errors"],
        "hops_ms": {hop: round(ms, 3) for hop, ms in row["hops_ms"].items()},
    }


def ratios(rows: dict[str, dict]) -> dict[str, float]:
    """The suite against the floor: p50 and p99 at 1 client, throughput at 8 clients, and
    each hop's median at 1 client."""
    served, base = rows[SUITE_1], rows[FLOOR_1]
    out = {
        "p50_at_1": served["p50_ms"] / base["p50_ms"],
        "p99_at_1": served["p99_ms"] / base["p99_ms"],
    }
    if FLOOR_8 in rows:
        out["throughput_at_8"] = rows[SUITE_8]["qps"] / rows[FLOOR_8]["qps"]
    for hop in HOPS:
        if hop in served["hops_ms"] and base["hops_ms"].get(hop):
            out[f"{hop}_p50_at_1"] = served["hops_ms"][hop] / base["hops_ms"][hop]
    return {name: round(value, 3) for name, value in out.items()}


def run(suite: Endpoints, seconds: float, report: dict) -> tuple[dict[str, dict], list[str]]:
    """The suite's measurements (printed, and added to ``report``); answers the Search rows
    and the queries."""
    from shared.bench import tax
    from shared.bench.encoder import bench_encoder
    from shared.bench.machine import machine, served_engines
    from shared.paths import triton_model_repository

    gateway, intent, retrieval = suite.gateway, suite.intent, suite.retrieval
    folder = ensure_demo_store(retrieval, DEMO_PRODUCTS, DEMO_SEED, console.print)
    wait_for_intent(intent, retrieval)
    queries = [q.text for q in load_queries(folder)]
    floor = Floor(suite.trainer, retrieval)
    repository = triton_model_repository()
    try:
        here = machine(served_engines(repository, floor.versions))
        console.print(here.line())
        report.update(machine=here.as_json(), models=floor.versions)
        bench_gateway(gateway, queries[:20], 1, 3.0)  # warm up every hop
        bench_floor(floor, queries[:20], 2.0)
        rows = {}
        # What each process says of itself around the suite's runs (shared.bench.tax), and
        # the CPU this process spends on the floor's runs and on the suite's clients.
        meters = {n: tax.Meter(tax.parse_targets(suite.metrics), repository) for n in (1, 8)}
        cpu_s: dict[str, float] = defaultdict(float)
        # In turns, suite, floor, floor, suite (ABBA), half the time each: neither side
        # gets the quieter minutes (a catalog load's aftermath, another job's burst).
        for clients, suite_row, floor_row in ((1, SUITE_1, FLOOR_1), (8, SUITE_8, FLOOR_8)):
            halves: dict[str, list[dict]] = {suite_row: [], floor_row: []}
            for row in (suite_row, floor_row, floor_row, suite_row):
                began = time.process_time()  # this process's CPU, all threads
                if row == suite_row:
                    with meters[clients].measuring():
                        halves[row].append(bench_gateway(gateway, queries, clients, seconds / 2))
                else:
                    halves[row].append(bench_floor(floor, queries, seconds / 2, clients))
                cpu_s[row] += time.process_time() - began
            rows[suite_row], rows[floor_row] = merged(halves[suite_row]), merged(halves[floor_row])
        rows = {name: rows[name] for name in (SUITE_1, SUITE_8, FLOOR_1, FLOOR_8)}
    finally:
        floor.close()
    console.print(
        "models: " + ", ".join(f"{model} {version}" for model, version in floor.versions.items())
    )

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
        *[f"{h} ms" for h in HOPS],
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, r in rows.items():
        table.add_row(
            name, str(r["n"]), str(r["errors"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['qps']:.1f}", *[f"{r['hops_ms'].get(h, float('nan')):.1f}" for h in HOPS],
        )  # fmt: skip
    console.print(table)
    suite_to_floor = ratios(rows)
    console.print(
        f"suite-to-floor at 1 client: p50 {suite_to_floor['p50_at_1']:.2f}x, "
        f"p99 {suite_to_floor['p99_at_1']:.2f}x; throughput at 8 clients "
        f"{suite_to_floor['throughput_at_8']:.2f}x the floor's; per hop (p50 at 1 client): "
        + ", ".join(
            f"{hop} {suite_to_floor[f'{hop}_p50_at_1']:.2f}x"
            for hop in HOPS
            if f"{hop}_p50_at_1" in suite_to_floor
        )
    )
    report.update(
        dataset=f"SYNTHETIC demo store ({DEMO_PRODUCTS} products)",
        seconds=seconds,
        runs=[as_run(name, row) for name, row in rows.items()],
        ratios=suite_to_floor,
    )
    report["tax"] = where_it_goes(rows, meters, cpu_s)
    encoder = bench_encoder(url=suite.triton, seconds=min(seconds, 5.0))
    engine = next(iter(encoder.pop("engine", {"onnxruntime": 1.0})))
    shares = encoder.pop("triton_share_of_inprocess")
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
    console.print(
        "text_encoder through Triton, share of the in-process rate (in turns): "
        + ", ".join(f"{batch} {share:.0%}" for batch, share in shares.items())
    )
    report["text_encoder"] = {**encoder, "triton_share_of_inprocess": shares}
    return rows, queries


def where_it_goes(rows: dict[str, dict], meters: dict, cpu_s: dict[str, float]) -> dict:
    """``make bench``'s account of the suite-to-floor gap (``shared.bench.tax``), printed:
    per hop at 1 client, the gateway's mean against its server's own and the floor's; per
    process at 8 clients, CPU milliseconds per search against the floor's. Returns them as
    ``--json`` writes them (``hops_at_1``, ``cpu_ms_per_search_at_8``)."""
    from shared.bench import tax

    hops = tax.hop_table(
        meters[1].total,
        rows[SUITE_1]["hop_samples"],
        rows[SUITE_1]["latencies_ms"],
        rows[FLOOR_1]["hop_samples"],
    )
    cpu = tax.cpu_table(meters[8].total, rows[SUITE_8]["n"], cpu_s[FLOOR_8], rows[FLOOR_8]["n"])
    if rows[SUITE_8]["n"]:
        # The suite's clients run in this process, on the same cores.
        cpu["bench clients"] = round(cpu_s[SUITE_8] / rows[SUITE_8]["n"] * 1e3, 3)
    table = Table(
        title="Where a search's time goes, 1 client, means: each hop as the gateway saw it "
        "(total: as the client saw the search), its server's own time (its /metrics), the "
        "transport between, and the floor's step"
    )
    for column in ("hop", "gateway ms", "server ms", "transport ms", "floor ms"):
        table.add_column(column, justify="left" if column == "hop" else "right")
    for hop, row in hops.items():
        table.add_row(
            hop,
            *[
                f"{row[key]:.2f}" if key in row else "-"
                for key in ("gateway_ms", "server_ms", "transport_ms", "floor_ms")
            ],
        )
    console.print(table)
    console.print(
        "CPU ms per search at 8 clients: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
    )
    return {"hops_at_1": hops, "cpu_ms_per_search_at_8": cpu}


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


def bench_security(queries: Sequence[str], seconds: float, state: Path, report: dict) -> None:
    """Search through two suites started here alike, on copies of the same databases, one
    plaintext and one with TLS and API keys, both up at once, in turns: plaintext,
    secure, secure, plaintext (ABBA, ``seconds`` in all for each side), so that neither
    gets the quieter minutes; p50 and p99 ratios at concurrency 1 and 8. (Against the
    suite of the first runs, started otherwise and up for longer, the comparison would
    measure that difference too.)"""
    from shared.bench.machine import machine

    if not (state / "catalog.db").is_file():
        console.print(f"no catalog in {state} (SHOPSENSE_STATE_DIR): TLS comparison skipped")
        return
    with tempfile.TemporaryDirectory(prefix="shopsense-bench-tls-") as tmp:
        folder = Path(tmp)
        env, client = secure_environment(folder)
        copy_databases(state, folder / "plain")
        copy_databases(state, folder / "secure")
        console.print(
            "starting two suites alike on copies of the databases, one plaintext and one "
            "with TLS and API keys; they then take turns, ABBA"
        )
        with (
            Suite(state=folder / "plain", ephemeral_ports=True) as plain,
            Suite(state=folder / "secure", ephemeral_ports=True, extra_env=env) as secure,
        ):
            plain_gateway, secure_gateway = plain.address("gateway"), secure.address("gateway")
            # Warm up every hop (intent builds its prototypes from the catalog at start).
            bench_gateway(secure_gateway, queries[:20], 1, 5.0, client)
            bench_gateway(plain_gateway, queries[:20], 1, 2.0)
            rows: dict[str, dict] = {}
            for clients, label in ((1, "1 client"), (8, "8 clients")):
                halves: dict[str, list[dict]] = {"plain": [], "secure": []}
                for side in ("plain", "secure", "secure", "plain"):
                    target, security = (
                        (plain_gateway, None) if side == "plain" else (secure_gateway, client)
                    )
                    halves[side].append(
                        bench_gateway(target, queries, clients, seconds / 2, security)
                    )
                rows[f"suite, {label}"] = merged(halves["plain"])
                rows[f"suite TLS+auth, {label}"] = merged(halves["secure"])
    console.print(machine().line())
    table = Table(
        title=f"Search with and without TLS + API keys, in turns (ABBA), {seconds:.0f} s each"
    )
    columns = ("run", "searches", "errors", "p50 ms", "p99 ms", "searches/s")
    columns += ("p50 ratio", "p99 ratio")
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, r in rows.items():
        b = rows[name.replace(" TLS+auth", "")]
        table.add_row(
            name, str(r["n"]), str(r["errors"]), f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['qps']:.1f}", f"{r['p50_ms'] / b['p50_ms']:.2f}x", f"{r['p99_ms'] / b['p99_ms']:.2f}x",
        )  # fmt: skip
    console.print(table)
    report["secure_runs"] = [
        {**as_run(name.replace(" TLS+auth", ""), row), "tls": "TLS+auth" in name}
        for name, row in rows.items()
    ]
    report["ratios"].update(
        {
            f"tls_auth_{figure}_at_{clients}": round(
                rows[f"suite TLS+auth, {label}"][f"{figure}_ms"]
                / rows[f"suite, {label}"][f"{figure}_ms"],
                3,
            )
            for clients, label in ((1, "1 client"), (8, "8 clients"))
            for figure in ("p50", "p99")
        }
    )


def bench_search(args: argparse.Namespace) -> int:
    """``shopsense bench search``: the runs, printed (and written to ``--json``)."""
    report: dict = {"benchmark": "search"}
    with running_suite(ClientSettings.load(), console.print) as suite:
        _, queries = run(suite, args.seconds, report)
    # After the first suite, when started here, has stopped: the next two have the machine.
    if not args.no_security:
        bench_security(queries, args.seconds, state_dir(), report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.bench.suite ARGS``: the same as ``shopsense bench search ARGS``."""
    from shared.bench.arguments import add_search_arguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_arguments(parser)
    return bench_search(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
