"""The one JSON gate every value passes before it is stored or sent.

Both databases must see exactly the same data, so a value JSON cannot carry
faithfully (a set, NaN, an arbitrary object, a string holding a NUL character,
which PostgreSQL refuses and SQLite would keep) is refused here, in Python,
with the path to the offending part, rather than by one database and not the
other. Pydantic models and dataclasses become plain JSON; tuples become lists.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from legato.errors import PayloadError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "child_path", "dumps", "loads", "to_json"]

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    """Serialise a value already checked by :func:`to_json`."""
    return _encoder.encode(value)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else json.loads(text)


def to_json(
    value: Any,
    *,
    what: str,
    max_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
    path: str = "$",
) -> tuple[Any, str]:
    """Return ``(plain_value, json_text)`` or raise :class:`PayloadError`.

    ``what`` says whose value this is (``"step 'load' output"``) and ``path``
    where in it ``value`` sits, so the error can name both.
    """
    try:
        plain = _plain(value, path, what)
    except RecursionError:
        raise PayloadError(f"{what}: {path} is nested too deeply to carry as JSON") from None
    text = dumps(plain)
    if max_bytes is not None:
        size = len(text.encode("utf-8"))
        if size > max_bytes:
            raise PayloadError(
                f"{what} is {size:,} bytes of JSON, over the limit of {max_bytes:,} bytes "
                "(store large data elsewhere and pass a reference, or raise max_payload_bytes)"
            )
    return plain, text


#: Python refuses to turn longer integers into text (``sys.get_int_max_str_digits``)
MAX_INT_DIGITS = 4300
_MAX_INT_BITS = int(MAX_INT_DIGITS * 3.3219)  # log2(10): a bound checked without converting


def _plain(value: Any, path: str, what: str) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise PayloadError(
                f"{what}: {path} is an integer of more than {MAX_INT_DIGITS:,} digits, "
                "which JSON cannot carry here (pass it as a string)"
            )
        return int(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise PayloadError(f"{what}: {path} is a string containing a NUL character (\\x00)")
        if not value.isascii() and not _is_utf8(value):
            raise PayloadError(
                f"{what}: {path} is a string with a lone surrogate, which UTF-8 cannot encode"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"{what}: {path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(
                    f"{what}: {path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            if "\x00" in key:
                raise PayloadError(f"{what}: {path} has a key containing a NUL character")
            if not key.isascii() and not _is_utf8(key):
                raise PayloadError(f"{what}: {path} has a key with a lone surrogate")
            out[key] = _plain(item, _child(path, key), what)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{path}[{i}]", what) for i, item in enumerate(value)]
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return _plain(value.model_dump(mode="json"), path, what)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _plain(fields, path, what)
    hint = ""
    if isinstance(value, set | frozenset):
        hint = " (convert it to a list)"
    elif hasattr(value, "isoformat"):
        hint = " (convert it with .isoformat())"
    elif isinstance(value, bytes | bytearray):
        hint = " (decode or base64-encode it)"
    kind = type(value).__name__
    raise PayloadError(f"{what}: {path} is of type {kind}, which JSON cannot carry{hint}")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def child_path(path: str, key: str) -> str:
    """``$.key`` or ``$["odd key"]``: where ``key`` of the value at ``path`` sits."""
    return _child(path, key)


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"
