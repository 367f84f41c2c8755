"""JSON serialisation of step inputs and outputs, and input hashing.

Values are stored as JSON so that the store stays inspectable from SQL and from other
languages. What a step's value is stored as, and revived into, is the codec's business
(:mod:`orchestrate._codec`); this module encodes and hashes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from json.encoder import encode_basestring_ascii
from typing import Any

from orchestrate.errors import SerializationError
from orchestrate.policies import MISSING


def _default(value: Any) -> Any:
    if value is MISSING:  # a skipped step's output: stored as null
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models, without importing pydantic
        return dump(mode="json")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        raise TypeError("bytes are not stored inline; encode them (base64) or offload them")
    raise TypeError(f"{type(value).__qualname__} is not JSON serialisable")


# Built once: json.dumps with arguments builds a new encoder on every call (hot path).
_DUMPS = json.JSONEncoder(default=_default, separators=(",", ":"), allow_nan=False).encode
_CANONICAL = json.JSONEncoder(default=_default, sort_keys=True, separators=(",", ":")).encode


# The C encoder ``_DUMPS`` builds on every call, built once; without the circular-reference
# check (a cycle ends in RecursionError, and ``_DUMPS`` then says what is wrong).
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)  # None where the C accelerator is missing
_C_ENCODE = (
    _MAKE_ENCODER(None, _default, encode_basestring_ascii, None, ":", ",", False, False, False)
    if _MAKE_ENCODER is not None
    else None
)


_TOO_DEEP = "it nests too deeply to be encoded (lists and dicts inside each other, hundreds of levels down)"


def encode(value: Any) -> str:
    """Compact JSON of ``value``; raises ``TypeError``/``ValueError`` (:func:`dumps` names the value).

    The same text as ``json.dumps(value, separators=(",", ":"), allow_nan=False)`` with
    the types :func:`_default` knows, the common cases without the encoder's set-up.
    """
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if _C_ENCODE is not None and (kind is dict or kind is list):
        try:
            return "".join(_C_ENCODE(value, 0))
        except RecursionError:
            pass  # a cycle, or nesting too deep: the checking encoder says which
    try:
        return _DUMPS(value)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None


def dumps(value: Any, *, what: str = "value") -> str:
    """Serialise ``value`` to compact JSON; raise :class:`SerializationError` naming ``what``."""
    try:
        return _DUMPS(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from None
    except RecursionError:
        raise SerializationError(f"{what} cannot be stored as JSON: {_TOO_DEEP}; flatten it") from None


def loads(text: str | None) -> Any:
    """Parse JSON written by :func:`dumps`; ``None`` stays ``None``."""
    return None if text is None else json.loads(text)


def input_hash(value: Any) -> str:
    """A short, stable hash of a value (sorted keys), for logs, caching and idempotency."""
    if type(value) is int:
        text = str(value)  # what the encoder writes for an int, without its set-up
    else:
        try:
            try:
                text = _CANONICAL(value)
            except (TypeError, ValueError):
                text = repr(value)
        except RecursionError:
            # Too deep to encode, or to repr: a hash of its own, that no other value shares
            # (a cache lookup misses); storing such a value is refused with a named error.
            text = f"<too deep> {os.urandom(16).hex()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
