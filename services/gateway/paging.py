"""Page tokens: opaque, signed, and bound to the request they continue.

A token is ``<kid>.<base64url(mac + body)>``: the id of the key that signed it (the first
of SHOPSENSE_TOKEN_KEYS; every listed key verifies), then a 12-byte HMAC-SHA256 of the JSON
body. A token without ``<kid>.`` (minted before key ids; '.' is not in base64url's alphabet)
is one of key ``default`` (shared/settings/keys.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from shopsense.search.v1 import search_service_pb2 as pb

from shared.errors import InvalidArgument
from shared.settings.keys import LEGACY_KID, TokenKeys


def _page_key(secret: str) -> bytes:
    return hashlib.sha256(b"page:" + secret.encode()).digest()


def request_fingerprint(request: pb.SearchRequest) -> str:
    """What must stay the same between pages: the query, shopper, filters and options.

    The page size must stay the same too, but the token binds it, not this: the fingerprint
    also seeds exploration and interleaving, which must not change with the page size."""
    probe = pb.SearchRequest()
    probe.CopyFrom(request)
    probe.page_size = 0
    probe.page_token = ""
    return hashlib.sha256(probe.SerializeToString(deterministic=True)).hexdigest()[:16]


class PageTokens:
    """Signs with the first key, verifies with the key the token names; a plain string is
    one key, id ``default``."""

    def __init__(self, keys: TokenKeys | str) -> None:
        if isinstance(keys, str):
            keys = TokenKeys.single(keys)
        self._keys = {kid: _page_key(secret) for kid, secret in keys.keys}
        self._kid = keys.signing[0]

    def encode(self, offset: int, fingerprint: str, page_size: int) -> str:
        """A token for the page at ``offset`` of the request ``fingerprint`` names, to be used
        with the same (effective) ``page_size``."""
        body = json.dumps(
            {"o": offset, "f": fingerprint, "s": page_size}, separators=(",", ":")
        ).encode()
        mac = hmac.new(self._keys[self._kid], body, hashlib.sha256).digest()[:12]
        return f"{self._kid}." + base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, token: str, fingerprint: str, page_size: int) -> int:
        """The offset the token continues at; INVALID_ARGUMENT naming page_token when it is
        malformed or was issued for another request or another (effective) page size."""
        kid, dot, encoded = token.rpartition(".")
        key = self._keys.get(kid if dot else LEGACY_KID)
        if key is None:
            # An unknown or retired key id reads like a bad signature.
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged")
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            mac, body = raw[:12], raw[12:]
            if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()[:12]):
                raise ValueError("bad mac")
            payload = json.loads(body)
            offset, bound = int(payload["o"]), str(payload["f"])
            # Tokens issued before the page size was bound have no "s": they still page.
            size = int(payload["s"]) if "s" in payload else page_size
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged") from exc
        if bound != fingerprint:
            raise InvalidArgument(
                "page_token: belongs to a different request (query, shopper, filters, options "
                "and page_size must stay the same between pages)"
            )
        if size != page_size:
            raise InvalidArgument(
                f"page_token: was issued for page_size {size}, not {page_size} (page_size, like "
                "the query, shopper, filters and options, must stay the same between pages)"
            )
        if offset < 0:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged")
        return offset
