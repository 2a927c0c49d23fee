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
    """What must stay the same between pages: the query, shopper, filters and options.

    The page size must stay the same too, but the token binds it, not this: the fingerprint
    also seeds exploration and interleaving, which must not change with the page size."""
    probe = pb.SearchRequest()
    probe.CopyFrom(request)
    probe.page_size = 0
    probe.page_token = ""
    return hashlib.sha256(probe.SerializeToString(deterministic=True)).hexdigest()[:16]


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"page:" + secret.encode()).digest()

    def encode(self, offset: int, fingerprint: str, page_size: int) -> str:
        """A token for the page at ``offset`` of the request ``fingerprint`` names, to be used
        with the same (effective) ``page_size``."""
        body = json.dumps(
            {"o": offset, "f": fingerprint, "s": page_size}, separators=(",", ":")
        ).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def decode(self, token: str, fingerprint: str, page_size: int) -> int:
        """The offset the token continues at; INVALID_ARGUMENT naming page_token when it is
        malformed or was issued for another request or another (effective) page size."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            mac, body = raw[:12], raw[12:]
            if not hmac.compare_digest(
                mac, hmac.new(self._key, body, hashlib.sha256).digest()[:12]
            ):
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
