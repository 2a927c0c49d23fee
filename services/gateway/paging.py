"""Page tokens: opaque, signed, and bound to the request they continue."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from shopsense.search.v1 import search_service_pb2 as pb

from shared.errors import InvalidArgument


def request_fingerprint(request: pb.SearchRequest) -> str:
    """What must stay the same between pages: the query, shopper, filters and options."""
    probe = pb.SearchRequest()
    probe.CopyFrom(request)
    probe.page_size = 0
    probe.page_token = ""
    return hashlib.sha256(probe.SerializeToString(deterministic=True)).hexdigest()[:16]


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"page:" + secret.encode()).digest()

    def encode(self, offset: int, fingerprint: str) -> str:
        body = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, token: str, fingerprint: str) -> int:
        """The offset the token continues at; INVALID_ARGUMENT naming page_token otherwise."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:12], raw[12:]
            if not hmac.compare_digest(
                mac, hmac.new(self._key, body, hashlib.sha256).digest()[:12]
            ):
                raise ValueError("bad mac")
            payload = json.loads(body)
            offset, bound = int(payload["o"]), str(payload["f"])
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged") from exc
        if bound != fingerprint:
            raise InvalidArgument(
                "page_token: belongs to a different request (query, shopper, filters and options "
                "must stay the same between pages)"
            )
        if offset < 0:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged")
        return offset
