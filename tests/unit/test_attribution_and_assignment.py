import base64
import collections
import hashlib
import hmac

import pytest

from shared.errors import InvalidArgument
from shared.experiments.assignment import Arm, Experiment, assign, bucket
from shared.experiments.attribution import Attribution, AttributionSigner

pytestmark = pytest.mark.unit


def test_token_round_trip_names_request_arm_and_versions():
    signer = AttributionSigner("secret")
    token = signer.encode(Attribution("req-1", "control", {"intent": "prototypes-g3"}, 1700000000))
    decoded = signer.decode(token)
    assert decoded == Attribution("req-1", "control", {"intent": "prototypes-g3"}, 1700000000)
    assert "req-1" not in token  # opaque to the storefront (base64, not plain text)


@pytest.mark.parametrize("position", [3, 10, -5])
def test_altered_token_is_rejected_as_forged(position):
    signer = AttributionSigner("secret")
    token = signer.encode(Attribution("req-1", "control", {}))
    flipped = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    with pytest.raises(InvalidArgument, match="attribution_token"):
        signer.decode(flipped)


def test_token_signed_with_another_secret_is_rejected():
    token = AttributionSigner("attacker").encode(Attribution("req-1", "treatment", {}))
    with pytest.raises(InvalidArgument, match="signature mismatch"):
        AttributionSigner("secret").decode(token)


@pytest.mark.parametrize("token", ["", "garbage", "v1.abc", "v2.a.b", "x" * 5000])
def test_malformed_tokens_are_rejected(token):
    with pytest.raises(InvalidArgument, match="attribution_token"):
        AttributionSigner("secret").decode(token)


def _signed_body(body: str, secret: str = "secret") -> str:
    """A token over any payload text, signed with the right key: what only a bug or a leaked
    secret could produce, so decode must still answer with InvalidArgument."""
    message = f"v1.{body}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return f"{message}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"


def _signed(payload: bytes | str) -> str:
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    return _signed_body(base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"))


_GOOD = AttributionSigner("secret").encode(Attribution("req-1", "control", {}, 1700000000))
_HEAD, _PAYLOAD, _SIGNATURE = _GOOD.rsplit(".", 2)
_FIELDS = '"rid":"r","arm":"a","mv":{},"iat":1700000000'


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("v1.\u00e9.x", id="non-ascii payload"),
        pytest.param(f"{_HEAD}.{_PAYLOAD}.\u00e9", id="real token, signature non-ascii"),
        pytest.param(f"{_HEAD}.{_PAYLOAD}.{_SIGNATURE[:-1]}\u00e9", id="signature ends non-ascii"),
        pytest.param(f"{_HEAD}.{_PAYLOAD}\u00e9.{_SIGNATURE}", id="payload ends non-ascii"),
        pytest.param(f"{_HEAD}.{_PAYLOAD}.{_SIGNATURE}\udcff", id="lone surrogate"),
        pytest.param("v1.\U0001f600.\U0001f600", id="emoji"),
        pytest.param("v1..", id="empty parts"),
        pytest.param(f"{_HEAD}.{_PAYLOAD}.", id="no signature"),
        pytest.param(_signed(b"\xff\xfe not utf-8"), id="signed non-utf-8"),
        pytest.param(_signed_body("abcde"), id="signed bad base64 length"),
        pytest.param(_signed_body("!!!!"), id="signed non-base64url"),
        pytest.param(_signed("[]"), id="signed list"),
        pytest.param(_signed("1"), id="signed number"),
        pytest.param(_signed('"a string"'), id="signed string"),
        pytest.param(_signed("null"), id="signed null"),
        pytest.param(_signed("{}"), id="signed empty object"),
        # Nesting deeper than the recursion limit (json raises RecursionError).
        pytest.param(_signed("[" * 1500 + "]" * 1500), id="signed deep nesting"),
        pytest.param(_signed('{"rid":1,"arm":"a","mv":{},"iat":1700000000}'), id="rid int"),
        pytest.param(_signed('{"rid":"r","arm":["a"],"mv":{},"iat":1700000000}'), id="arm list"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":[],"iat":1700000000}'), id="mv list"),
        pytest.param(
            _signed('{"rid":"r","arm":"a","mv":[["k","v"]],"iat":1700000000}'), id="mv pairs"
        ),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{"k":1},"iat":1700000000}'), id="mv int"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":"x","iat":1700000000}'), id="mv str"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{},"iat":"1700000000"}'), id="iat str"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{},"iat":true}'), id="iat bool"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{},"iat":1.5e400}'), id="iat inf"),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{},"iat":NaN}'), id="iat nan"),
        pytest.param(
            _signed('{"rid":"r","arm":"a","mv":{},"iat":1' + "0" * 400 + "}"), id="iat huge"
        ),
        pytest.param(_signed('{"rid":"r","arm":"a","mv":{},"iat":-1}'), id="iat negative"),
        pytest.param(_signed("{" + _FIELDS + ',"off":"3","tm":"ab"}'), id="off str"),
        pytest.param(_signed("{" + _FIELDS + ',"off":-1,"tm":"ab"}'), id="off negative"),
        pytest.param(_signed("{" + _FIELDS + ',"tm":["a","b"]}'), id="tm list"),
        pytest.param(_signed("{" + _FIELDS + ',"q":{"text":"sofa"}}'), id="q object"),
        pytest.param(_signed("{" + _FIELDS + ',"exp":0}'), id="exp int"),
        pytest.param(_signed("{" + _FIELDS + ',"x":"yes"}'), id="x str"),
    ],
)
def test_decode_raises_only_invalid_argument_naming_the_field_whatever_the_string(token):
    with pytest.raises(InvalidArgument, match=r"^attribution_token: "):
        AttributionSigner("secret").decode(token)


def test_a_signed_payload_of_the_expected_shape_decodes():
    # The helper above signs like the signer does: the cases it builds fail on content only.
    token = _signed("{" + _FIELDS + ',"q":"sofa","x":1,"exp":"e","tm":"ab","off":20}')
    decoded = AttributionSigner("secret").decode(token)
    assert decoded == Attribution("r", "a", {}, 1700000000, "e", "ab", 20, "sofa", True)


def test_assignment_is_deterministic_and_balanced():
    experiment = Experiment("exp", "salt-1", (Arm("a", 0.5), Arm("b", 0.5)))
    first = [assign(experiment, f"user-{i}", "") for i in range(20_000)]
    again = [assign(experiment, f"user-{i}", "") for i in range(20_000)]
    assert first == again
    counts = collections.Counter(first)
    # Binomial(20000, 0.5): sd = 71; 4 sd either side.
    assert abs(counts["a"] - 10_000) < 300


def test_session_id_is_used_for_anonymous_shoppers_and_salt_changes_buckets():
    experiment = Experiment("exp", "s", (Arm("a", 0.5), Arm("b", 0.5)))
    assert assign(experiment, "", "sess-9") == assign(experiment, "", "sess-9")
    moved = sum(bucket(f"u{i}", "s1") != bucket(f"u{i}", "s2") for i in range(1000))
    assert moved > 990
