"""Token keys: ids in every token, the first key signs, every key verifies; rotation keeps
the old key's tokens valid until it is dropped; tokens minted before key ids are key
``default``'s; production refuses the development secret and short secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.paging import PageTokens, request_fingerprint
from shared.errors import InvalidArgument
from shared.experiments.attribution import Attribution, AttributionSigner, token_keys
from shared.settings import DEV_TOKEN_SECRET, FeedbackSettings, GatewaySettings, TokenKeys

pytestmark = pytest.mark.unit

OLD = "old:" + "o" * 32
NEW = "new:" + "n" * 32
ATTRIBUTION = Attribution("req-1", "control", {"cross_encoder": "2"}, 1_700_000_000)


def _fingerprint() -> str:
    return request_fingerprint(pb.SearchRequest(query="sofa"))


def test_parse_keeps_the_order_and_never_shows_a_secret() -> None:
    keys = TokenKeys.parse(f"{NEW}, {OLD}")
    assert keys.kids == ("new", "old") and keys.signing == ("new", "n" * 32)
    assert keys.secret("old") == "o" * 32 and keys.secret("gone") is None
    assert "nnnn" not in repr(keys) and "nnnn" not in str(keys)
    # A secret may hold ':' (only the first one separates).
    assert TokenKeys.parse("k1:a:b").secret("k1") == "a:b"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("just-a-secret", "entry 1: expected kid:secret"),
        ("a:x,a:y", "key id 'a' appears twice"),
        ("a:", "key 'a': empty secret"),
        ("a b:x", "key id 'a b'"),
        (":x", "key id ''"),
    ],
)
def test_malformed_keys_are_refused_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^SHOPSENSE_TOKEN_KEYS: {message}"):
        GatewaySettings.load({"SHOPSENSE_TOKEN_KEYS": raw})


def test_token_secret_is_the_one_key_default_and_token_keys_wins() -> None:
    assert GatewaySettings.load({"SHOPSENSE_TOKEN_SECRET": "s"}).token_keys.keys == (
        ("default", "s"),
    )
    both = FeedbackSettings.load({"SHOPSENSE_TOKEN_SECRET": "s", "SHOPSENSE_TOKEN_KEYS": NEW})
    assert both.token_keys.kids == ("new",)


def test_rotation_verifies_tokens_of_both_keys_until_the_old_one_is_dropped() -> None:
    before = AttributionSigner(TokenKeys.parse(OLD))
    old_token = before.encode(ATTRIBUTION)
    rotated = AttributionSigner(TokenKeys.parse(f"{NEW},{OLD}"))
    new_token = rotated.encode(ATTRIBUTION)
    assert old_token.startswith("v2.old.") and new_token.startswith("v2.new.")
    assert rotated.decode(old_token) == ATTRIBUTION
    assert rotated.decode(new_token) == ATTRIBUTION
    # A service not yet rotated (old key only) refuses the new key's tokens, and once the
    # old key is dropped its tokens are refused like a forged one.
    with pytest.raises(InvalidArgument, match=r"^attribution_token: signature mismatch"):
        before.decode(new_token)
    after = AttributionSigner(TokenKeys.parse(NEW))
    assert after.decode(new_token) == ATTRIBUTION
    with pytest.raises(InvalidArgument, match=r"^attribution_token: signature mismatch"):
        after.decode(old_token)


def test_a_token_naming_an_accepted_kid_but_signed_with_another_key_is_refused() -> None:
    forged = AttributionSigner(TokenKeys.parse("old:attacker-key")).encode(ATTRIBUTION)
    with pytest.raises(InvalidArgument, match=r"^attribution_token: signature mismatch"):
        AttributionSigner(TokenKeys.parse(f"{NEW},{OLD}")).decode(forged)


def test_a_token_cannot_be_moved_to_another_key_id() -> None:
    # Both keys share a secret: the kid is signed too, so relabelling still fails.
    signer = AttributionSigner(TokenKeys.parse("a:same-secret,b:same-secret"))
    token = signer.encode(ATTRIBUTION)
    relabelled = token.replace("v2.a.", "v2.b.", 1)
    with pytest.raises(InvalidArgument, match="signature mismatch"):
        signer.decode(relabelled)


def _v1_token(secret: str) -> str:
    """A token as minted before key ids (``v1.<payload>.<signature>``)."""
    payload = {"rid": "req-old", "arm": "control", "mv": {}, "iat": 1_700_000_000}
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    message = f"v1.{body}"
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return f"{message}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_tokens_minted_before_key_ids_are_key_defaults() -> None:
    legacy = _v1_token("the-old-secret")
    # SHOPSENSE_TOKEN_SECRET=the-old-secret, as before: they verify.
    assert AttributionSigner("the-old-secret").decode(legacy).request_id == "req-old"
    # Rotating from it keeps them while 'default' is listed ...
    rotating = AttributionSigner(TokenKeys.parse(f"{NEW},default:the-old-secret"))
    assert rotating.decode(legacy).request_id == "req-old"
    # ... and refuses them once it is dropped.
    with pytest.raises(InvalidArgument, match=r"^attribution_token: signature mismatch"):
        AttributionSigner(TokenKeys.parse(NEW)).decode(legacy)


def test_page_tokens_rotate_the_same_way() -> None:
    fingerprint = _fingerprint()
    old_token = PageTokens(TokenKeys.parse(OLD)).encode(20, fingerprint, 10)
    rotated = PageTokens(TokenKeys.parse(f"{NEW},{OLD}"))
    new_token = rotated.encode(30, fingerprint, 10)
    assert new_token.startswith("new.")
    assert rotated.decode(old_token, fingerprint, 10) == 20
    assert rotated.decode(new_token, fingerprint, 10) == 30
    dropped = PageTokens(TokenKeys.parse(NEW))
    assert dropped.decode(new_token, fingerprint, 10) == 30
    with pytest.raises(InvalidArgument, match=r"^page_token: malformed"):
        dropped.decode(old_token, fingerprint, 10)
    with pytest.raises(InvalidArgument, match=r"^page_token: malformed"):
        dropped.decode("unknown." + new_token.partition(".")[2], fingerprint, 10)


def test_page_tokens_minted_before_key_ids_are_key_defaults() -> None:
    fingerprint = _fingerprint()
    body = json.dumps({"o": 20, "f": fingerprint, "s": 10}, separators=(",", ":")).encode()
    key = hashlib.sha256(b"page:the-old-secret").digest()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:12]
    legacy = base64.urlsafe_b64encode(mac + body).decode().rstrip("=")
    assert PageTokens("the-old-secret").decode(legacy, fingerprint, 10) == 20
    with pytest.raises(InvalidArgument, match=r"^page_token: malformed"):
        PageTokens(TokenKeys.parse(NEW)).decode(legacy, fingerprint, 10)


@pytest.mark.parametrize("settings_class", [GatewaySettings, FeedbackSettings])
def test_production_refuses_to_start_without_real_keys(settings_class: type) -> None:
    production = {"SHOPSENSE_MODE": "production"}
    with pytest.raises(ValueError, match=r"^SHOPSENSE_TOKEN_KEYS: required in production"):
        token_keys(settings_class.load(production))
    with pytest.raises(ValueError, match=r"^SHOPSENSE_TOKEN_KEYS: required in production"):
        token_keys(settings_class.load({**production, "SHOPSENSE_TOKEN_SECRET": DEV_TOKEN_SECRET}))
    short = {**production, "SHOPSENSE_TOKEN_KEYS": f"{NEW},short:0123456789"}
    with pytest.raises(ValueError, match=r"^SHOPSENSE_TOKEN_KEYS: key 'short' is shorter than 32"):
        token_keys(settings_class.load(short))
    assert token_keys(settings_class.load({**production, "SHOPSENSE_TOKEN_KEYS": NEW})).kids == (
        "new",
    )
    # Embedded mode keeps the development default (with its warning).
    assert token_keys(settings_class.load({})).keys == (("default", DEV_TOKEN_SECRET),)


def test_gateway_and_feedback_refuse_to_start_in_production_without_keys() -> None:
    from services.feedback.server import create_server as create_feedback
    from services.gateway.server import create_server as create_gateway

    for create, settings_class in (
        (create_gateway, GatewaySettings),
        (create_feedback, FeedbackSettings),
    ):
        settings = settings_class.load({"SHOPSENSE_MODE": "production"}, listen="127.0.0.1:0")
        with pytest.raises(ValueError, match=r"^SHOPSENSE_TOKEN_KEYS: required in production"):
            create(settings)
