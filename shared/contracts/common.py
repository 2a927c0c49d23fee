"""Conversions between the contracts' messages and the library's plain types."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.models.versions import MAX_VERSION_DIGITS, is_version_number

EMBEDDING_DIM = 384
MAX_QUERY_CHARS = 512
MAX_SHOPPER_ID_CHARS = 128


def product_to_proto(product: Product, with_description: bool = True) -> common_pb2.Product:
    return common_pb2.Product(
        product_id=product.product_id,
        title=product.title,
        description=product.description if with_description else "",
        product_class=product.product_class,
        category=product.category,
        attributes=product.attributes,
        price=product.price,
        rating=product.rating,
        review_count=product.review_count,
    )


def product_from_proto(message: common_pb2.Product) -> Product:
    return Product(
        product_id=message.product_id,
        title=message.title,
        description=message.description,
        product_class=message.product_class,
        category=message.category,
        attributes={k.lower(): v for k, v in message.attributes.items()},
        price=message.price,
        rating=message.rating,
        review_count=message.review_count,
    )


def _visible(text: str) -> str:
    """``text`` without format characters (Cf: zero-width space, BOM, LRM/RLM, soft hyphen,
    joiners), and with control characters (Cc: NUL, tab, escape, ...) turned into spaces."""
    if text.isascii() and text.isprintable():  # the common case; skips the per-character pass
        return text
    kept = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf":
            continue  # never separates words: "sofa\u200b" is "sofa"
        kept.append(" " if category == "Cc" else ch)
    return "".join(kept)


def validate_query(query: str, field: str = "query") -> str:
    """The query as the services use it; INVALID_ARGUMENT naming ``field`` when it is empty,
    whitespace or invisible, or longer than MAX_QUERY_CHARS (counted as sent).

    Invisible characters are cleaned first: format characters (Unicode category Cf, such as
    U+200B zero-width space, U+FEFF BOM, U+200E/U+200F direction marks, U+00AD soft hyphen)
    are removed and control characters (Cc, such as NUL, tab, ESC) become spaces; then the
    result is stripped. So a query of invisible characters alone is refused like an empty
    one, and "sofa\u200b" is searched as "sofa".
    """
    stripped = _visible(query).strip()
    if not stripped:
        raise InvalidArgument(f"{field}: must not be empty or whitespace")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArgument(
            f"{field}: {len(query)} characters exceeds the limit of {MAX_QUERY_CHARS}"
        )
    return stripped


def embedding_from_proto(
    message: common_pb2.Embedding, field: str = "query_embedding"
) -> np.ndarray:
    vector = np.asarray(message.values, dtype=np.float32)
    if vector.shape != (EMBEDDING_DIM,):
        raise InvalidArgument(
            f"{field}.values: expected {EMBEDDING_DIM} values, got {vector.shape[0]}"
        )
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(f"{field}.values: must be finite numbers")
    return vector


def embedding_to_proto(vector: np.ndarray, model_version: str) -> common_pb2.Embedding:
    return common_pb2.Embedding(
        values=vector.astype(np.float32).tolist(), model_version=model_version
    )


def validate_version(value: str, field: str, *, required: bool = False) -> str:
    """A model version as requests carry it: a positive integer of at most 19 ASCII digits
    (Triton's versions are int64), surrounding whitespace ignored. Empty means the serving
    version, unless ``required``. INVALID_ARGUMENT naming ``field`` otherwise."""
    version = value.strip()
    if not version:
        if required:
            raise InvalidArgument(f'{field}: required (a Triton model version such as "2")')
        return ""
    if not is_version_number(version):
        allowed = "a positive integer" if required else "empty or a positive integer"
        raise InvalidArgument(
            f"{field}: must be {allowed} of at most {MAX_VERSION_DIGITS} digits "
            f"(got {version[:40]!r})"
        )
    return version


def check_count(items: Sequence[object], field: str, limit: int, minimum: int = 0) -> None:
    if len(items) < minimum:
        raise InvalidArgument(f"{field}: at least {minimum} required")
    if len(items) > limit:
        raise InvalidArgument(f"{field}: {len(items)} items exceeds the limit of {limit}")


def count_or_default(value: int, field: str, default: int, maximum: int) -> int:
    """A size field where 0 means the documented default: INVALID_ARGUMENT outside 1..maximum."""
    if value == 0:
        return default
    if value < 1 or value > maximum:
        raise InvalidArgument(
            f"{field}: must be between 1 and {maximum} (0 means {default}), got {value}"
        )
    return value


def timestamp_or_none(value: datetime | None) -> Timestamp | None:
    """An aware datetime as a protobuf Timestamp; None stays None (field left unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def set_timestamps(message: Message, **values: datetime | None) -> None:
    """Set each named Timestamp field of ``message`` to its datetime; None leaves it unset."""
    for name, value in values.items():
        stamp = timestamp_or_none(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)


def checked_shopper(user: common_pb2.UserContext) -> tuple[str, str]:
    """A request's ``user`` (search, recommendation) as ``(user_id, session_id)``, by
    ``validate_shopper``'s rule and at most ``MAX_SHOPPER_ID_CHARS`` characters each."""
    validate_shopper(user.user_id, user.session_id, prefix="user.")
    for name, value in (("user.user_id", user.user_id), ("user.session_id", user.session_id)):
        if len(value) > MAX_SHOPPER_ID_CHARS:
            raise InvalidArgument(f"{name}: longer than {MAX_SHOPPER_ID_CHARS} characters")
    return user.user_id, user.session_id


def validate_shopper(user_id: str, session_id: str, prefix: str = "") -> None:
    """The one rule, gateway and feedback alike, for the ids that name a shopper.

    Empty means absent. Whitespace alone names nobody: when neither id has more, the shopper
    is missing (named as ``{prefix}user_id``). A present id must not be whitespace only even
    when the other names the shopper: it is a client bug, and stored or searched as given it
    would be a shopper of its own. ``prefix`` is the fields' path in the request ("user.").
    Length and character checks stay with each service.
    """
    user_field, session_field = f"{prefix}user_id", f"{prefix}session_id"
    if not user_id.strip() and not session_id.strip():
        raise InvalidArgument(
            f"{user_field}: at least one of {user_field} and {session_field} is required "
            "(whitespace only counts as absent)"
        )
    for field, value in ((user_field, user_id), (session_field, session_id)):
        if value and not value.strip():
            raise InvalidArgument(f"{field}: must not be whitespace only (leave it empty)")
