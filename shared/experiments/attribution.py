"""Attribution tokens: opaque to storefronts, signed so that feedback can trust them.

A token is ``v1.<payload>.<signature>`` where payload is base64url JSON
``{"rid": request id, "arm": experiment arm, "mv": {model: version}, "iat": unix seconds,
"q": the query}`` (the query lets the trainer learn from the clicks on its results), ``"x": 1``
when the gateway shuffled the page's top results (exploration), ``"pl"``: the
recommendation placement of a recommendation list, plus, inside an experiment, ``"exp"`` (its name) and for interleaving ``"tm"``: the arm
that contributed each result of the page, one letter a position ("a" the first arm, "b"
the second), from 1-based position ``"off"`` + 1 on.
and signature is base64url HMAC-SHA256 over ``v1.<payload>`` with the suite's secret.
Changing one byte of the payload or signature makes ``decode`` fail.

Tokens now carry the id of the key that signed them: ``v2.<kid>.<payload>.<signature>``,
the signature over ``v2.<kid>.<payload>`` with that key (shared/settings/keys.py: the first
of SHOPSENSE_TOKEN_KEYS signs, all verify). A ``v1`` token (minted before key ids) is one of
key ``default``: it verifies while that key is accepted. An unknown or retired key id is
refused like a bad signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field

import structlog

from shared.errors import InvalidArgument
from shared.settings import FeedbackSettings, GatewaySettings, token_keys_problem
from shared.settings import uses_dev_token_secret as _uses_dev_secret
from shared.settings.keys import KEYS_ENV, LEGACY_KID, TokenKeys

_PREFIX, _LEGACY_PREFIX = "v2", "v1"
_log = structlog.get_logger("shopsense.tokens")
# A 512-character query of 4-byte characters, base64-encoded, fits with room to spare.
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Attribution:
    """What a token says: which request, arm and model versions produced a result list."""

    request_id: str
    arm: str
    model_versions: dict[str, str] = field(default_factory=dict)
    issued_at: int = 0
    # The experiment the arm belongs to; "" outside any.
    experiment: str = ""
    # Interleaving: "a"/"b" per result of the page, the first at position offset + 1.
    teams: str = ""
    offset: int = 0
    # The query the page answered ("" in tokens of earlier versions).
    query: str = ""
    # Whether the page's top results were shuffled (shared/experiments/exploration.py).
    explored: bool = False
    # The recommendation placement the list was made for ("" for a search).
    placement: str = ""

    def team_at(self, position: int) -> str:
        """The interleaved arm letter of the result at 1-based ``position`` ("" if none)."""
        index = position - self.offset - 1
        return self.teams[index] if 0 <= index < len(self.teams) else ""


def token_keys(settings: GatewaySettings | FeedbackSettings) -> TokenKeys:
    """The keys a service signs and verifies tokens with, checked at its start: ValueError
    naming the variable in production without real keys; a warning on the development
    secret in embedded mode."""
    problem = token_keys_problem(settings)
    if problem is not None:
        raise ValueError(problem)
    if _uses_dev_secret(settings):
        _log.warning(
            "dev_token_secret", hint=f"set {KEYS_ENV} (kid:secret,...) outside development"
        )
    return settings.token_keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AttributionSigner:
    """Signs with the first of the keys gateway and feedback share, verifies with any of
    them (picked by the token's key id). A plain string is one key, id ``default``."""

    def __init__(self, keys: TokenKeys | str) -> None:
        if isinstance(keys, str):
            if not keys:
                raise ValueError("attribution token secret must not be empty")
            keys = TokenKeys.single(keys)
        self._keys = {kid: secret.encode("utf-8") for kid, secret in keys.keys}
        self._kid = keys.signing[0]

    def _sign(self, kid: str, message: str) -> str:
        key = self._keys[kid]
        return _b64(hmac.new(key, message.encode("ascii"), hashlib.sha256).digest())

    def encode(self, attribution: Attribution) -> str:
        payload = {
            "rid": attribution.request_id,
            "arm": attribution.arm,
            "mv": attribution.model_versions,
            "iat": attribution.issued_at or int(time.time()),
        }
        if attribution.query:
            payload["q"] = attribution.query
        if attribution.explored:
            payload["x"] = 1
        if attribution.placement:
            payload["pl"] = attribution.placement
        if attribution.experiment:
            payload["exp"] = attribution.experiment
        if attribution.teams:
            payload["tm"] = attribution.teams
            payload["off"] = attribution.offset
        body = _b64(
            json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(
                "utf-8"
            )
        )
        message = f"{_PREFIX}.{self._kid}.{body}"
        return f"{message}.{self._sign(self._kid, message)}"

    def decode(self, token: str, field_name: str = "attribution_token") -> Attribution:
        """Verify and decode; raise InvalidArgument naming ``field_name`` when malformed or forged.

        Any string gets InvalidArgument and nothing else: a feedback batch fails whole on any
        other exception, losing its valid events.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidArgument(f"{field_name}: longer than {MAX_TOKEN_CHARS} characters")
        # Tokens are base64url and dots; a non-ASCII str would break the ASCII signing and
        # hmac.compare_digest (TypeError), so it is refused before either.
        if not token.isascii():
            raise InvalidArgument(f"{field_name}: malformed (non-ASCII characters)")
        parts = token.split(".")
        if len(parts) == 4 and parts[0] == _PREFIX:
            kid, body, signature = parts[1], parts[2], parts[3]
        elif len(parts) == 3 and parts[0] == _LEGACY_PREFIX:
            kid, body, signature = LEGACY_KID, parts[1], parts[2]
        else:
            raise InvalidArgument(f"{field_name}: malformed (not a shopsense attribution token)")
        if kid not in self._keys:
            # Like a bad signature: a forger learns nothing about which ids exist.
            raise InvalidArgument(
                f"{field_name}: signature mismatch (signed with a key that is not accepted: "
                "unknown or retired)"
            )
        message = token[: len(token) - len(signature) - 1]
        if not hmac.compare_digest(self._sign(kid, message), signature):
            raise InvalidArgument(f"{field_name}: signature mismatch (forged or altered token)")
        # Signed, yet checked as strictly as untrusted input: a bug or a leaked key must not
        # turn into an exception other than InvalidArgument.
        try:
            payload = json.loads(_unb64(body))
            return _attribution(payload)
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise InvalidArgument(f"{field_name}: malformed payload") from exc


# The latest second datetime can hold (9999-12-31T23:59:59Z): feedback turns ``iat`` into one.
_MAX_IAT = 253_402_300_799
_MISSING = object()


def _str(payload: dict[str, object], key: str, default: object = _MISSING) -> str:
    value = payload.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key!r}: expected a string, got {value!r}")
    return value


def _int(payload: dict[str, object], key: str, default: object = _MISSING) -> int:
    value = payload.get(key, default)
    # bool is an int to Python but never what encode writes.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key!r}: expected an integer, got {value!r}")
    return value


def _attribution(payload: object) -> Attribution:
    """The Attribution a decoded payload describes; ValueError unless it has the shape
    ``encode`` writes."""
    if not isinstance(payload, dict):
        raise ValueError("payload: not a JSON object")
    versions = payload.get("mv")
    if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
        raise ValueError(f"'mv': expected an object of strings, got {versions!r}")
    issued_at, offset = _int(payload, "iat"), _int(payload, "off", 0)
    if not 0 <= issued_at <= _MAX_IAT or offset < 0:
        raise ValueError(f"'iat' {issued_at} or 'off' {offset}: out of range")
    return Attribution(
        request_id=_str(payload, "rid"),
        arm=_str(payload, "arm"),
        model_versions=versions,
        issued_at=issued_at,
        experiment=_str(payload, "exp", ""),
        teams=_str(payload, "tm", ""),
        offset=offset,
        query=_str(payload, "q", ""),
        explored=bool(_int(payload, "x", 0)),
        placement=_str(payload, "pl", ""),
    )
