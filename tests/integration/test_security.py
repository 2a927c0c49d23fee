"""TLS, API keys, scopes, the operator listener and the limits, on a real feedback service
(port 0, a real SQLite file) with real certificates written by ``shared.rpc.tls`` (the
code behind ``make certs``): a call without a key, with an unknown key, with the wrong
scope, over its rate, an expired or foreign client certificate, a rotated server
certificate served without a restart, an operator RPC on the main listener, idle and
too many streams, the plaintext health listener, and production mode refusing to start.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from services.feedback.server import create_server
from shared.paths import REPO_ROOT
from shared.rpc.auth import hash_key, retry_delay_of
from shared.rpc.clients import ClientSecurity, open_channel
from shared.rpc.server import ServerHandle
from shared.rpc.tls import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    Issued,
    TlsFiles,
    dev_client_files,
    dev_service_files,
    issue,
    new_ca,
    write_dev_certs,
)
from shared.runtime.suite import is_serving
from shared.settings import FeedbackSettings
from tests.support import metric, scrape, wait_until

pytestmark = pytest.mark.integration
NOWHERE = "127.0.0.1:9"
KEYS = {
    "storefront": ("sk-storefront", ["search", "recommend", "feedback"], {}),
    "privacy": ("sk-privacy", ["privacy"], {}),
    # One call every 2 s after a burst of 2: a slow machine's calls never refill the bucket.
    "slow": ("sk-slow", ["feedback"], {"rate_per_s": 0.5, "burst": 2}),
    "streamer": ("sk-streamer", ["feedback"], {"max_streams": 1}),
}


def _keys_file(path: Path) -> Path:
    entries = [
        {"id": key_id, "sha256": hash_key(key), "scopes": scopes, **extra}
        for key_id, (key, scopes, extra) in KEYS.items()
    ]
    path.write_text(json.dumps({"keys": entries}))
    return path


def _save(folder: Path, name: str, issued: Issued) -> TlsFiles:
    (folder / f"{name}.crt").write_bytes(issued.cert)
    (folder / f"{name}.key").write_bytes(issued.key)
    return TlsFiles(folder / f"{name}.crt", folder / f"{name}.key", folder / CA_FILE)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsFiles]:
    """``make certs``' files, and an expired client certificate from the same CA."""
    folder = tmp_path_factory.mktemp("certs")
    write_dev_certs(folder)
    ca = Issued((folder / CA_FILE).read_bytes(), (folder / "ca.key").read_bytes())
    a_month_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = issue(ca, "storefront", ("storefront",), server=False, days=1, valid_from=a_month_ago)
    return {
        "service": dev_service_files(folder),
        "client": dev_client_files(folder),
        "expired": _save(folder, "expired", expired),
    }


def _settings(tmp: Path, certs: dict[str, TlsFiles], **changes: object) -> FeedbackSettings:
    service = certs["service"]
    given: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "operator_listen": "127.0.0.1:0",
        "health_listen": "127.0.0.1:0",
        "state_dir": tmp,
        "token_secret": "security-secret-" + "x" * 32,  # long enough for production
        "retrieval_target": NOWHERE,
        "recommend_target": NOWHERE,
        "tls_cert": str(service.cert),
        "tls_key": str(service.key),
        "tls_ca": str(service.ca),
        "api_keys_file": str(_keys_file(tmp / "keys.json")),
        "stream_idle_s": 1.0,
    }
    given.update(changes)
    return FeedbackSettings.load(environ={}, **given)


@pytest.fixture(scope="module")
def feedback(
    tmp_path_factory: pytest.TempPathFactory, certs: dict[str, TlsFiles]
) -> Iterator[ServerHandle]:
    handle = create_server(_settings(tmp_path_factory.mktemp("feedback"), certs))
    try:
        wait_until(
            lambda: is_serving(handle.address, security=ClientSecurity(certs["client"])),
            "feedback SERVING over TLS",
        )
        yield handle
    finally:
        handle.stop(0)


def _stub(address: str, tls: TlsFiles | None, key: str = "") -> pb_grpc.FeedbackServiceStub:
    return pb_grpc.FeedbackServiceStub(open_channel(address, ClientSecurity(tls, key)))


def _event(event_id: str) -> pb.Event:
    event = pb.Event(
        event_id=event_id,
        type=pb.EVENT_TYPE_CLICK,
        user_id="u-1",
        session_id="s-1",
        product_id="p-1",
        position=1,
    )
    event.timestamp.GetCurrentTime()
    return event


def _record(stub: pb_grpc.FeedbackServiceStub, event_id: str = "e-1") -> pb.RecordEventsResponse:
    return stub.RecordEvents(pb.RecordEventsRequest(events=[_event(event_id)]), timeout=10)


def _refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value  # type: ignore[return-value]


def test_a_storefront_key_with_the_scope_records_events(feedback, certs) -> None:
    reply = _record(_stub(feedback.address, certs["client"], "sk-storefront"))
    assert reply.accepted == 1


def test_a_call_without_a_key_is_unauthenticated(feedback, certs) -> None:
    error = _refused(lambda: _record(_stub(feedback.address, certs["client"])))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing API key" in error.details()


def test_an_unknown_key_is_unauthenticated(feedback, certs) -> None:
    error = _refused(lambda: _record(_stub(feedback.address, certs["client"], "sk-guessed")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "authorization: unknown API key"


def test_a_key_without_the_scope_is_denied_naming_the_scope(feedback, certs) -> None:
    error = _refused(lambda: _record(_stub(feedback.address, certs["client"], "sk-privacy")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "needs scope 'feedback'" in error.details()
    assert "'privacy'" in error.details()  # the key's name, never the key itself
    assert "sk-privacy" not in error.details()


def test_over_its_rate_a_key_gets_resource_exhausted_with_a_retry_delay(feedback, certs) -> None:
    stub = _stub(feedback.address, certs["client"], "sk-slow")
    # Burst 2 at 0.5 calls/s: the third call at once is refused.
    _record(stub, "slow-1")
    _record(stub, "slow-2")
    error = _refused(lambda: _record(stub, "slow-3"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit of API key 'slow'" in error.details()
    delay = retry_delay_of(error.trailing_metadata())
    assert delay is not None and 0 < delay <= 2.0
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    assert abs(retry.retry_delay.ToTimedelta().total_seconds() - delay) < 0.002
    # Another key is not held back by this one's bucket, and after the delay it may call again.
    assert _record(_stub(feedback.address, certs["client"], "sk-storefront"), "other").accepted
    time.sleep(delay + 0.05)
    assert _record(stub, "slow-4").accepted == 1


HANDLED_CODES = ("UNAUTHENTICATED", "PERMISSION_DENIED", "OK")


def test_refusals_are_counted_with_their_codes_in_the_rpc_metrics(feedback, certs) -> None:
    """An operator watching grpc_server_handled_total sees refused calls, by code."""
    method = {
        "grpc_service": "shopsense.feedback.v1.FeedbackService",
        "grpc_method": "RecordEvents",
    }

    def handled(samples: dict, code: str) -> float:
        return metric(samples, "grpc_server_handled_total", grpc_code=code, **method)

    before = scrape(feedback.metrics_port)
    _refused(lambda: _record(_stub(feedback.address, certs["client"])))
    _refused(lambda: _record(_stub(feedback.address, certs["client"], "sk-guessed")))
    _refused(lambda: _record(_stub(feedback.address, certs["client"], "sk-privacy")))
    assert _record(_stub(feedback.address, certs["client"], "sk-storefront"), "counted").accepted
    # A call is counted as it ends, which the client may see a moment before the server.
    started = "grpc_server_started_total"

    def all_counted() -> bool:
        now = scrape(feedback.metrics_port)
        return sum(handled(now, c) - handled(before, c) for c in HANDLED_CODES) == 4

    wait_until(all_counted, "the four calls counted in grpc_server_handled_total", timeout=5)
    after = scrape(feedback.metrics_port)
    assert handled(after, "UNAUTHENTICATED") - handled(before, "UNAUTHENTICATED") == 2
    assert handled(after, "PERMISSION_DENIED") - handled(before, "PERMISSION_DENIED") == 1
    assert handled(after, "OK") - handled(before, "OK") == 1
    assert metric(after, started, **method) - metric(before, started, **method) == 4


def test_an_operator_rpc_is_refused_on_the_main_listener_and_served_on_its_own(
    feedback, certs
) -> None:
    request = pb.ShopperRequest(user_id="u-1")
    main = _stub(feedback.address, certs["client"], "sk-privacy")
    error = _refused(lambda: list(main.ExportShopperEvents(request, timeout=10)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "SHOPSENSE_FEEDBACK_OPERATOR_LISTEN" in error.details()
    operator = _stub(feedback.operator_address, certs["client"], "sk-privacy")
    events = list(operator.ExportShopperEvents(request, timeout=10))
    assert all(e.user_id == "u-1" for e in events)
    # And a storefront RPC is not served on the operator listener.
    storefront = _stub(feedback.operator_address, certs["client"], "sk-storefront")
    error = _refused(lambda: _record(storefront))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "storefront RPC" in error.details()


def test_a_service_certificate_is_internal_and_needs_no_key(feedback, certs) -> None:
    # The services' certificate names shopsense-<service>: the gateway's and the
    # recommender's calls need no key, operator RPCs included on the main listener.
    stub = _stub(feedback.address, certs["service"])
    assert _record(stub, "from-a-service").accepted == 1
    list(stub.ExportShopperEvents(pb.ShopperRequest(user_id="u-1"), timeout=10))


def test_an_expired_or_foreign_or_missing_client_certificate_is_refused(
    feedback, certs, tmp_path: Path
) -> None:
    expired = _refused(lambda: _record(_stub(feedback.address, certs["expired"], "sk-storefront")))
    assert expired.code() == grpc.StatusCode.UNAVAILABLE
    # The control: the same certificate, but valid today, is served.
    ca_dir = certs["service"].ca.parent
    ca = Issued((ca_dir / CA_FILE).read_bytes(), (ca_dir / "ca.key").read_bytes())
    (tmp_path / CA_FILE).write_bytes(certs["client"].ca.read_bytes())
    valid = _save(tmp_path, "valid", issue(ca, "storefront", ("storefront",), server=False))
    assert _record(_stub(feedback.address, valid, "sk-storefront"), "valid-cert").accepted == 1
    # A certificate from another CA, and none at all.
    other = new_ca("another CA")
    foreign = _save(tmp_path, "foreign", issue(other, "storefront", ("storefront",), server=False))
    refused = _refused(lambda: _record(_stub(feedback.address, foreign, "sk-storefront")))
    assert refused.code() == grpc.StatusCode.UNAVAILABLE
    anonymous = grpc.secure_channel(
        feedback.address, grpc.ssl_channel_credentials(certs["client"].ca.read_bytes())
    )
    no_cert = pb_grpc.FeedbackServiceStub(anonymous)
    assert _refused(lambda: _record(no_cert)).code() == grpc.StatusCode.UNAVAILABLE
    # Plaintext to a TLS listener is refused too.
    plaintext = _refused(lambda: _record(_stub(feedback.address, None, "sk-storefront")))
    assert plaintext.code() == grpc.StatusCode.UNAVAILABLE


def test_the_health_listener_is_plaintext_and_health_only(feedback, certs) -> None:
    channel = grpc.insecure_channel(feedback.health_address)
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    error = _refused(lambda: _record(pb_grpc.FeedbackServiceStub(channel)))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def _stream(stub: pb_grpc.FeedbackServiceStub, requests: queue.Queue) -> Iterator:
    def messages() -> Iterator[pb.StreamEventsRequest]:
        while (item := requests.get()) is not None:
            yield item

    return stub.StreamEvents(messages(), timeout=30)


def test_a_silent_stream_is_closed_and_a_key_has_a_stream_limit(feedback, certs) -> None:
    stub = _stub(feedback.address, certs["client"], "sk-streamer")
    first: queue.Queue = queue.Queue()
    answers = _stream(stub, first)
    first.put(pb.StreamEventsRequest(sequence=1, events=[_event("stream-1")]))
    assert next(answers).sequence == 1
    silent_since = time.monotonic()
    # max_streams 1: a second stream of the same key is refused while the first is open.
    second = _refused(lambda: next(_stream(stub, queue.Queue())))
    assert second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 streams open" in second.details()
    # Silent for over SHOPSENSE_STREAM_IDLE_S (1 s here): closed, naming the setting.
    idle = _refused(lambda: next(answers))
    assert idle.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "SHOPSENSE_STREAM_IDLE_S" in idle.details()
    assert 0.5 < time.monotonic() - silent_since < 10
    first.put(None)
    # The closed stream no longer counts: a new one is served.
    third: queue.Queue = queue.Queue()
    answers = _stream(stub, third)
    third.put(pb.StreamEventsRequest(sequence=7, events=[_event("stream-7")]))
    assert next(answers).sequence == 7
    third.put(None)
    assert list(answers) == []


def _served_serial(address: str, client: TlsFiles) -> int:
    """The serial number of the certificate the server shows a new connection."""
    context = ssl.create_default_context(cafile=str(client.ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_rotated_server_certificate_is_served_without_a_restart(certs, tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    folder.mkdir()
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        source = {CA_FILE: certs["service"].ca, CERT_FILE: certs["service"].cert}.get(
            name, certs["service"].key
        )
        (folder / name).write_bytes(source.read_bytes())
    handle = create_server(
        _settings(
            tmp_path,
            certs,
            tls_cert=str(folder / CERT_FILE),
            tls_key=str(folder / KEY_FILE),
            tls_ca=str(folder / CA_FILE),
        )
    )
    try:
        old = x509.load_pem_x509_certificate(certs["service"].cert.read_bytes()).serial_number
        assert _served_serial(handle.address, certs["client"]) == old
        channel_before = _stub(handle.address, certs["client"], "sk-storefront")
        assert _record(channel_before, "before").accepted == 1
        ca_dir = certs["service"].ca.parent
        ca = Issued((ca_dir / CA_FILE).read_bytes(), (ca_dir / "ca.key").read_bytes())
        renewed = issue(ca, "shopsense-services", ("localhost", "127.0.0.1", "shopsense-feedback"))
        (folder / KEY_FILE).write_bytes(renewed.key)
        (folder / CERT_FILE).write_bytes(renewed.cert)
        new = x509.load_pem_x509_certificate(renewed.cert).serial_number
        wait_until(lambda: _served_serial(handle.address, certs["client"]) == new, "renewed cert")
        # New channels and the channel opened before the rotation are both served.
        assert _record(_stub(handle.address, certs["client"], "sk-storefront"), "after").accepted
        assert _record(channel_before, "before-2").accepted == 1
    finally:
        handle.stop(0)


def test_production_refuses_to_start_without_tls_naming_the_variables(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SHOPSENSE_")},
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'shared' / 'gen'}",
        "SHOPSENSE_MODE": "production",
        "SHOPSENSE_STATE_DIR": str(tmp_path),
        # Token keys long enough for production (shared.settings.keys): TLS, keys, the
        # operator listener and a shared database are missing.
        "SHOPSENSE_TOKEN_KEYS": "k1:" + "s" * 40,
        "SHOPSENSE_FEEDBACK_LISTEN": "127.0.0.1:0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.feedback"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    for variable in (
        "SHOPSENSE_TLS_CERT",
        "SHOPSENSE_TLS_KEY",
        "SHOPSENSE_TLS_CA",
        "SHOPSENSE_API_KEYS_FILE",
        "SHOPSENSE_FEEDBACK_OPERATOR_LISTEN",
        "SHOPSENSE_FEEDBACK_DB_URL",
    ):
        assert variable in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "feedback.db").exists()  # refused before opening anything


def test_production_refuses_a_feedback_store_of_its_own(tmp_path: Path, certs) -> None:
    with pytest.raises(ValueError, match="SHOPSENSE_FEEDBACK_DB_URL: production needs") as refused:
        create_server(_settings(tmp_path, certs, mode="production"))
    assert "TLS is required" not in str(refused.value)  # TLS, keys and listener are there
    assert not (tmp_path / "feedback.db").exists()  # refused before opening anything


def test_production_starts_with_tls_keys_and_an_operator_listener(
    tmp_path: Path, certs, postgres_url: str
) -> None:
    handle = create_server(
        _settings(tmp_path, certs, mode="production", feedback_db_url=postgres_url)
    )
    try:
        assert handle.tls and handle.operator_port
        assert _record(_stub(handle.address, certs["client"], "sk-storefront")).accepted == 1
    finally:
        handle.stop(0)


def test_keys_file_changes_are_picked_up_without_a_restart(tmp_path: Path, certs) -> None:
    handle = create_server(_settings(tmp_path, certs))
    try:
        stub = _stub(handle.address, certs["client"], "sk-new")
        assert _refused(lambda: _record(stub)).code() == grpc.StatusCode.UNAUTHENTICATED
        keys = json.loads((tmp_path / "keys.json").read_text())
        keys["keys"].append({"id": "new", "sha256": hash_key("sk-new"), "scopes": ["feedback"]})
        (tmp_path / "keys.json").write_text(json.dumps(keys))
        wait_until(lambda: _try_record(stub), "the new key accepted", timeout=10)
    finally:
        handle.stop(0)


def _try_record(stub: pb_grpc.FeedbackServiceStub) -> bool:
    try:
        return _record(stub, f"k-{threading.get_ident()}-{time.monotonic_ns()}").accepted == 1
    except grpc.RpcError:
        return False
