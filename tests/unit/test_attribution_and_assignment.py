import collections

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
