"""`shopsense fuzz`: every RPC of every service, fed generated messages; then who is alive.

A suite of its own is started (free ports, a temporary state folder, a small SYNTHETIC
catalog loaded), so nothing sent here touches a store anyone uses. Each service process
is asked through gRPC reflection which services it serves; every method of every one of
them (health and reflection aside) gets ``--examples`` requests built by hypothesis from
the method's own input descriptor: every field set or left unset; strings drawn from the
big list of naughty strings (515, vendored in ``fuzzdata/``, MIT), hypothesis's own text or
the suite's own product ids, classes and queries; integers at their type's edges; floats
including NaN, infinities and -0.0; enum numbers beyond the declared ones; nested messages
three levels deep; repeated fields and maps up to 4 entries. Half the requests are tame
(plausible values only), so that some pass validation and reach deeper code. Client
streams send 1 to 3 such messages; server streams are read to their end.

Then each method gets the simplest requests likely to be valid (one scalar field set to a
plausible value, alone and beside each nested message filled with an id-like value: a
search with a query and a shopper), and up to ``MUTATED_SEEDS`` of those answered OK are
sent again with one scalar field at a time made hostile (naughty strings, "", 5,000
characters, integer edges, NaN and infinities, an undeclared enum number): a request that
passes the other checks carries the bad value deep into the service.

Printed: each method's calls by status code, then the totals. A method fails the run with
an INTERNAL or UNKNOWN answer (an unexpected error in the server: it should have named
the bad field with INVALID_ARGUMENT, NOT_FOUND, ...), and the run fails when a process
exited, or when any service is not SERVING at the end. Exit status 1 then.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console

FUZZDATA = Path(__file__).resolve().parent / "fuzzdata"
SKIPPED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
# Codes that name an unexpected server error rather than the request's fault.
FAILING = ("INTERNAL", "UNKNOWN")
CALL_TIMEOUT_S = 20.0
MAX_DEPTH = 3
INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "sint32": (-(2**31), 2**31 - 1),
    "sfixed32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "sint64": (-(2**63), 2**63 - 1),
    "sfixed64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "fixed32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
    "fixed64": (0, 2**64 - 1),
}


def naughty_strings() -> list[str]:
    """The big list of naughty strings (vendored copy)."""
    return json.loads((FUZZDATA / "blns.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ message strategies
def _field_type(fd: Any) -> str:
    from google.protobuf.descriptor import FieldDescriptor as F

    names = {
        F.TYPE_DOUBLE: "double",
        F.TYPE_FLOAT: "float",
        F.TYPE_INT64: "int64",
        F.TYPE_UINT64: "uint64",
        F.TYPE_INT32: "int32",
        F.TYPE_FIXED64: "fixed64",
        F.TYPE_FIXED32: "fixed32",
        F.TYPE_BOOL: "bool",
        F.TYPE_STRING: "string",
        F.TYPE_MESSAGE: "message",
        F.TYPE_BYTES: "bytes",
        F.TYPE_UINT32: "uint32",
        F.TYPE_ENUM: "enum",
        F.TYPE_SFIXED32: "sfixed32",
        F.TYPE_SFIXED64: "sfixed64",
        F.TYPE_SINT32: "sint32",
        F.TYPE_SINT64: "sint64",
    }
    return names[fd.type]


def _edges(low: int, high: int) -> list[int]:
    return sorted({low, high, 0, 1, -1 if low < 0 else 0, 2**31 - 1 if high > 2**31 else high})


@dataclass(frozen=True)
class Vocabulary:
    """What a field's values are drawn from: the naughty strings, and plausible values (the
    suite's own product ids, classes, queries, model names), so that some requests get
    past the first check and reach deeper code."""

    naughty: list[str]
    plausible: list[str]


def scalar_strategy(fd: Any, words: Vocabulary, tame: bool = False) -> Any:
    """Values for one non-message field: hostile, edge and plausible ones (``tame``: only
    plausible ones, so that the request may be valid)."""
    from hypothesis import strategies as st

    kind = _field_type(fd)
    if tame:
        if kind == "string":
            return st.sampled_from(words.plausible)
        if kind in ("double", "float"):
            return st.floats(0, 1, width=64 if kind == "double" else 32)
        if kind == "enum":
            return st.sampled_from([v.number for v in fd.enum_type.values])
        if kind in INT_RANGES:
            return st.integers(0, 50)
    if kind == "string":
        return st.one_of(
            st.sampled_from(words.naughty),
            st.sampled_from(words.plausible),
            st.text(max_size=40),
            st.sampled_from(["", " ", "a" * 5_000, "0", "-1", "NaN"]),
        )
    if kind == "bytes":
        return st.binary(max_size=64)
    if kind == "bool":
        return st.booleans()
    if kind in ("double", "float"):
        return st.one_of(
            st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e-308]),
            st.floats(0, 1, width=64 if kind == "double" else 32),
            st.floats(width=64 if kind == "double" else 32),
        )
    if kind == "enum":
        declared = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(declared), st.integers(-3, max(declared) + 3))
    low, high = INT_RANGES[kind]
    return st.one_of(
        st.sampled_from(_edges(low, high)), st.integers(max(low, 0), 100), st.integers(low, high)
    )


def message_strategy(
    desc: Any, classes: Callable[[Any], type], words: Vocabulary, depth: int = 0, tame: bool = False
) -> Any:
    """Messages of descriptor ``desc``: each field unset or set to generated values
    (``tame``: plausible values only, all the way down)."""
    from hypothesis import strategies as st

    cls = classes(desc)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    parts: dict[str, Any] = {}
    for fd in desc.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key_fd, value_fd = (
                fd.message_type.fields_by_name["key"],
                fd.message_type.fields_by_name["value"],
            )
            value = (
                message_strategy(value_fd.message_type, classes, words, depth + 1, tame)
                if value_fd.message_type is not None
                else scalar_strategy(value_fd, words, tame)
            )
            parts[fd.name] = st.dictionaries(
                scalar_strategy(key_fd, words, tame), value, max_size=4
            )
            continue
        one = (
            message_strategy(fd.message_type, classes, words, depth + 1, tame)
            if fd.message_type is not None
            else scalar_strategy(fd, words, tame)
        )
        repeated = fd.label == fd.LABEL_REPEATED
        parts[fd.name] = st.lists(one, max_size=4) if repeated else one

    def build(values: dict[str, Any]) -> Any:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            fd = desc.fields_by_name[name]
            target = getattr(message, name)
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if fd.message_type.fields_by_name["value"].message_type is not None:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif fd.label == fd.LABEL_REPEATED:
                target.extend(value)
            elif fd.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    if tame:  # each field set one time in three: fewer fields, fewer ways to be invalid
        rare = {
            name: st.integers(0, 2).flatmap(lambda i, v=value: v if i == 0 else st.none())
            for name, value in parts.items()
        }
        return st.fixed_dictionaries(rare).map(build)
    return st.fixed_dictionaries({}, optional=parts).map(build)


# ------------------------------------------------------------------ discovery and calls
@dataclass
class Method:
    """One RPC as reflection describes it, with its message classes."""

    process: str
    address: str
    service: str
    name: str
    request: Any
    response_class: type
    client_streaming: bool
    server_streaming: bool
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    rejections: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def discover(processes: dict[str, str]) -> tuple[list[Method], Callable[[Any], type]]:
    """Every method each process serves (health and reflection aside), by reflection."""
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    def class_of(desc: Any) -> type:
        # Each process's reflection fills a pool of its own: a class per descriptor object
        # (GetMessageClass caches them), never one shared by name across pools.
        return message_factory.GetMessageClass(desc)

    methods = []
    for process, address in processes.items():
        channel = grpc.insecure_channel(address)
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        for service in database.get_services():
            if service.startswith(SKIPPED_SERVICES):
                continue
            sdesc = pool.FindServiceByName(service)
            for m in sdesc.methods:
                methods.append(
                    Method(
                        process,
                        address,
                        service,
                        m.name,
                        m.input_type,
                        class_of(m.output_type),
                        m.client_streaming,
                        m.server_streaming,
                    )
                )
        channel.close()
    return methods, class_of


def call(channel: grpc.Channel, method: Method, messages: list[Any]) -> str:
    """Send ``messages`` (one unless the method takes a stream); the status code's name."""
    serialize = type(messages[0]).SerializeToString
    deserialize = method.response_class.FromString
    try:
        if method.client_streaming and method.server_streaming:
            stub = channel.stream_stream(method.path, serialize, deserialize)
            for _ in stub(iter(messages), timeout=CALL_TIMEOUT_S):
                pass
        elif method.client_streaming:
            channel.stream_unary(method.path, serialize, deserialize)(
                iter(messages), timeout=CALL_TIMEOUT_S
            )
        elif method.server_streaming:
            for _ in channel.unary_stream(method.path, serialize, deserialize)(
                messages[0], timeout=CALL_TIMEOUT_S
            ):
                pass
        else:
            channel.unary_unary(method.path, serialize, deserialize)(
                messages[0], timeout=CALL_TIMEOUT_S
            )
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            # The field the server named: what the fuzz mostly trips over, per method.
            method.rejections[(error.details() or "").split(":")[0][:60]] += 1
        return error.code().name
    return "OK"


def fuzz_method(
    method: Method, classes: Callable[[Any], type], words: Vocabulary, examples: int, seed: int
) -> None:
    """Run ``examples`` generated requests through ``method``, counting status codes."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    # Half hostile, half plausible: a request that passes validation reaches deeper code.
    one = st.one_of(
        message_strategy(method.request, classes, words),
        message_strategy(method.request, classes, words, tame=True),
    )
    batch = (
        st.lists(one, min_size=1, max_size=3)
        if method.client_streaming
        else st.lists(one, min_size=1, max_size=1)
    )
    channel = grpc.insecure_channel(
        method.address,
        options=[("grpc.max_send_message_length", 64 * 2**20)],
    )

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(batch)
    def run(messages: list[Any]) -> None:
        send(messages)

    def send(messages: list[Any]) -> str:
        code = call(channel, method, messages)
        method.codes[code] += 1
        if code in FAILING and len(method.failures) < 3:
            method.failures.append(repr(messages[0])[:300])
        return code

    try:
        run()
        # Then valid requests with one field made hostile: a request that passes the
        # other checks carries the bad value deep into the service.
        valid = [m for m in singletons(method.request, classes, words) if send([m]) == "OK"]
        for message in valid[:MUTATED_SEEDS]:
            for mutant in mutants(message, words):
                send([mutant])
    finally:
        channel.close()


# Valid requests mutated, per method, and the hostile values each scalar field gets.
MUTATED_SEEDS = 3
HOSTILE_NUMBERS = (-1, 0, 2**31 - 1)
HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, -1.0, 1e308)


def _scalar_fields(desc: Any) -> list[Any]:
    return [fd for fd in desc.fields if fd.message_type is None and fd.label != fd.LABEL_REPEATED]


def singletons(desc: Any, classes: Callable[[Any], type], words: Vocabulary) -> list[Any]:
    """Requests with one scalar field set to a plausible value, alone and then beside each
    nested message whose string fields all hold an id-like plausible value: the simplest
    requests likely to be valid (a search with only a query and a shopper, ...)."""
    alone = _singletons(desc, classes, words)
    token = next((w for w in words.plausible if w and not any(c.isspace() for c in w)), "x")
    out = list(alone)
    for fd in desc.fields:
        if fd.message_type is None or fd.label == fd.LABEL_REPEATED:
            continue
        for message in alone:
            paired = type(message)()
            paired.CopyFrom(message)
            nested = getattr(paired, fd.name)
            for sub in _scalar_fields(fd.message_type):
                if _field_type(sub) == "string":
                    setattr(nested, sub.name, token)
            nested.SetInParent()
            out.append(paired)
    return out


def _singletons(desc: Any, classes: Callable[[Any], type], words: Vocabulary) -> list[Any]:
    out = []
    for fd in _scalar_fields(desc):
        kind = _field_type(fd)
        if kind == "string":
            values: list[Any] = words.plausible[:: max(1, len(words.plausible) // 3)][:3]
        elif kind in INT_RANGES:
            values = [1, 10]
        elif kind in ("double", "float"):
            values = [0.5]
        elif kind == "enum":
            values = [v.number for v in fd.enum_type.values if v.number][:2]
        else:
            continue
        for value in values:
            message = classes(desc)()
            setattr(message, fd.name, value)
            out.append(message)
    return out


def mutants(message: Any, words: Vocabulary) -> list[Any]:
    """``message`` with one scalar field at a time set to hostile values (its set field
    and every other one)."""
    out = []
    for fd in _scalar_fields(message.DESCRIPTOR):
        kind = _field_type(fd)
        if kind == "string":
            values: list[Any] = [*words.naughty[::50], "", "a" * 5_000]
        elif kind in INT_RANGES:
            low, high = INT_RANGES[kind]
            values = [v for v in (low, high, *HOSTILE_NUMBERS) if low <= v <= high]
        elif kind in ("double", "float"):
            values = list(HOSTILE_FLOATS)
        elif kind == "enum":
            values = [max(v.number for v in fd.enum_type.values) + 7]
        else:
            continue
        for value in values:
            mutant = type(message)()
            mutant.CopyFrom(message)
            setattr(mutant, fd.name, value)
            out.append(mutant)
    return out


# ------------------------------------------------------------------ the command
def fuzz_suite(
    examples: int, seed: int, products: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Start a throwaway suite, fuzz every method, and report (see the module)."""
    import shutil

    from shared.data.synthetic import generate_store
    from shared.paths import triton_model_repository
    from shared.recommendation.recommender import PLACEMENTS
    from shared.runtime.catalog import upsert_products
    from shared.runtime.suite import SERVICES, Suite, is_serving
    from shared.training.report import MODELS

    strings = naughty_strings()
    with tempfile.TemporaryDirectory(prefix="shopsense-fuzz-") as tmp:
        # A copy of the model repository: a publish the fuzzer gets through writes there.
        models = Path(tmp) / "models"
        shutil.copytree(triton_model_repository(), models)
        suite = Suite(state=Path(tmp) / "state", model_repository=models, ephemeral_ports=True)
        say("starting a suite of its own (free ports, a temporary state folder)")
        with suite:
            store = generate_store(n_products=products, n_queries=20, seed=seed)
            upsert_products(suite.address("retrieval"), store.products, progress=False)
            # Queries first: a request with one string field set gets one of them first.
            plausible = [q.text for q in store.queries] + sorted(
                {p.product_id for p in store.products}
                | {p.product_class for p in store.products}
                | set(MODELS)
                | set(PLACEMENTS)
                | {"1", "2", "u1", "shopper-1", "hybrid", "lexical", "dense"}
            )
            words = Vocabulary(strings, plausible)
            methods, classes = discover({name: suite.address(name) for name in SERVICES})
            say(f"{len(methods)} methods on {len(SERVICES)} services; {examples} requests each")
            crashed: list[str] = []
            started = time.monotonic()
            for method in methods:
                fuzz_method(method, classes, words, examples, seed)
                for name, process in suite.processes.items():
                    if process.poll() is not None and name not in crashed:
                        crashed.append(name)
                        say(f"{name} exited ({process.returncode}) after {method.path}")
                failing = sum(method.codes[c] for c in FAILING)
                say(
                    f"{method.path:<70} {sum(method.codes.values()):>4} calls"
                    + (f"  {failing} INTERNAL/UNKNOWN" if failing else "")
                )
            serving = {name: is_serving(suite.address(name), timeout_s=5) for name in SERVICES}
            triton_live = suite.triton is not None and suite.triton.is_running()
            elapsed = time.monotonic() - started
    totals: collections.Counter[str] = collections.Counter()
    for method in methods:
        totals.update(method.codes)
    return {
        "methods": [
            {
                "process": m.process,
                "method": m.path,
                "codes": dict(m.codes),
                "rejected_fields": dict(m.rejections.most_common(5)),
                "failures": m.failures,
            }
            for m in methods
        ],
        "totals": dict(totals),
        "internal_or_unknown": sum(totals[c] for c in FAILING),
        "crashed": crashed,
        "serving_at_end": serving,
        "triton_live_at_end": triton_live,
        "seconds": elapsed,
        "examples": examples,
        "naughty_strings": len(strings),
    }


def _run(args: argparse.Namespace, console: Console) -> int:
    report = fuzz_suite(args.examples, args.seed, args.products, console.print)
    console.print()
    console.print("| method | calls | status codes |")
    console.print("|---|---|---|")
    for m in report["methods"]:
        codes = ", ".join(f"{c} {n}" for c, n in sorted(m["codes"].items()))
        console.print(f"| {m['method']} | {sum(m['codes'].values())} | {codes} |")
    totals = report["totals"]
    console.print()
    console.print(
        f"{sum(totals.values()):,} calls to {len(report['methods'])} methods in "
        f"{report['seconds']:.0f} s: " + ", ".join(f"{c} {n:,}" for c, n in sorted(totals.items()))
    )
    console.print(f"INTERNAL or UNKNOWN: {report['internal_or_unknown']}")
    console.print(f"processes that exited: {len(report['crashed'])} {report['crashed'] or ''}")
    down = [n for n, ok in report["serving_at_end"].items() if not ok]
    console.print(
        f"SERVING at the end: {len(report['serving_at_end']) - len(down)} of "
        f"{len(report['serving_at_end'])} services"
        + (f" (not: {', '.join(down)})" if down else "")
        + f"; Triton live: {report['triton_live_at_end']}"
    )
    for m in report["methods"]:
        for failure in m["failures"]:
            console.print(f"  {m['method']}: {failure}", markup=False)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    ok = (
        report["internal_or_unknown"] == 0
        and not report["crashed"]
        and not down
        and report["triton_live_at_end"]
    )
    return 0 if ok else 1


def add_parser(sub: Any, console: Console) -> None:
    """``shopsense fuzz``."""
    parser = sub.add_parser(
        "fuzz",
        help="every RPC of every service fed generated messages and naughty strings, "
        "on a suite of its own: status codes, INTERNAL count, processes alive",
    )
    parser.add_argument("--examples", type=int, default=50, help="requests per method (50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--products", type=int, default=200, help="SYNTHETIC catalog size")
    parser.add_argument("--json", help="write the report as JSON here")
    parser.set_defaults(func=lambda args: _run(args, console))
