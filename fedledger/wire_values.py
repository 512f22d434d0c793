"""Typed readers of round-message values: each refuses a missing or mistyped value, naming its key."""

from __future__ import annotations

import json
from typing import Any


class RoundMessageError(ValueError):
    """A round message lacks a key or holds a value of the wrong type."""


def read_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise RoundMessageError(f"round message key {key!r} must be an integer, got {value!r}")
    return int(value)


def read_float(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RoundMessageError(f"round message key {key!r} must be a number, got {value!r}")
    return float(value)


def read_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise RoundMessageError(f"round message key {key!r} must be a string, got {value!r}")
    return value


def read_bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise RoundMessageError(f"round message key {key!r} must be a boolean, got {value!r}")
    return value


def read_json_object(key: str, value: object) -> dict[str, Any]:
    try:
        parsed = json.loads(read_str(key, value))
    except json.JSONDecodeError as exc:
        raise RoundMessageError(f"round message key {key!r} is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise RoundMessageError(f"round message key {key!r} must be a JSON object, got {value!r}")
    return parsed
