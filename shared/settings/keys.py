"""The keys that sign attribution and page tokens: ids, the signing key, the accepted ones.

``SHOPSENSE_TOKEN_KEYS`` is ``kid:secret,kid:secret,...``: the first key signs, every key
verifies, and a token carries the id of the key that signed it. Rotation is two steps:
put the new key first (old tokens still verify with the old one, listed second), then
drop the old key once its tokens are past their window (7 days for attribution tokens:
SHOPSENSE_ATTRIBUTION_WINDOW_S); its tokens are refused from then on.

``SHOPSENSE_TOKEN_SECRET`` stays as the one-key shorthand: ``S`` means ``default:S``. It
keeps ``make run`` and existing deployments working unchanged, and it gives tokens minted
before key ids existed (they carry none) a clean rule: a token without a key id is one of
key ``default``, so it verifies exactly while a key ``default`` with the same secret is
accepted, and is refused once that key is dropped.

In production (SHOPSENSE_MODE=production) a service that uses tokens refuses to start on
the development secret or on a secret shorter than :data:`MIN_SECRET_BYTES`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The key id of SHOPSENSE_TOKEN_SECRET, and of tokens minted before key ids existed.
LEGACY_KID = "default"
# HMAC-SHA256's block is 64 bytes and its output 32: a shorter secret is guessable sooner
# than the MAC itself. Production refuses less.
MIN_SECRET_BYTES = 32
KEYS_ENV = "SHOPSENSE_TOKEN_KEYS"
# Short, URL-safe and dot-free: a key id is written into tokens between dots.
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class TokenKeys:
    """Key ids and secrets in order: the first signs, all verify. The repr names the ids
    only, so a settings record or a traceback never prints a secret."""

    keys: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("expected at least one kid:secret")
        seen: set[str] = set()
        for kid, secret in self.keys:
            if not _KID.fullmatch(kid):
                raise ValueError(
                    f"key id {kid!r}: 1 to 32 letters, digits, '-' or '_' (kid:secret,...)"
                )
            if not secret:
                raise ValueError(f"key {kid!r}: empty secret")
            if kid in seen:
                raise ValueError(f"key id {kid!r} appears twice")
            seen.add(kid)

    @classmethod
    def parse(cls, raw: str) -> TokenKeys:
        """``kid:secret,kid:secret``; ValueError saying what is wrong (never the secret).
        A secret may hold ':' (only the first one separates) but not ','."""
        keys = []
        for part in raw.split(","):
            kid, colon, secret = part.strip().partition(":")
            if not colon:
                # The entry may be a bare secret: it is not echoed.
                raise ValueError(f"entry {len(keys) + 1}: expected kid:secret (kid:secret,...)")
            keys.append((kid, secret))
        return cls(tuple(keys))

    @classmethod
    def single(cls, secret: str) -> TokenKeys:
        """SHOPSENSE_TOKEN_SECRET's one key, id :data:`LEGACY_KID`."""
        return cls(((LEGACY_KID, secret),))

    @property
    def signing(self) -> tuple[str, str]:
        """``(kid, secret)`` of the key new tokens are signed with."""
        return self.keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self.keys)

    def secret(self, kid: str) -> str | None:
        """The accepted secret of ``kid``; None when no accepted key has that id."""
        return next((secret for k, secret in self.keys if k == kid), None)

    def production_problem(self, dev_secret: str) -> str | None:
        """Why these keys must not sign in production, naming the variable; None if fine."""
        for kid, secret in self.keys:
            if secret == dev_secret:
                return (
                    f"{KEYS_ENV}: required in production (key {kid!r} is the development "
                    "secret); set kid:secret,... with secrets of at least "
                    f"{MIN_SECRET_BYTES} bytes"
                )
            if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
                return (
                    f"{KEYS_ENV}: key {kid!r} is shorter than {MIN_SECRET_BYTES} bytes "
                    "(production refuses it)"
                )
        return None

    def __repr__(self) -> str:
        return f"TokenKeys(kids={list(self.kids)})"

    __str__ = __repr__
