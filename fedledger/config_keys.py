"""Every key of a composed study config is one the schema knows, ``+`` overrides included.

Hydra's struct mode refuses ``num_round=3``, but a ``+key=value`` override
opens the node and adds the key, and nothing would ever read it (issue 17:
``+num_round=3`` ran 10 rounds). This walks the resolved config against the
``StudyConfig`` dataclasses and refuses any key they do not declare, naming
it and the closest known key, before a study is set up. Free-form nodes keep
their own checks: ``dataset`` (fl_client.data, strict per kind), ``budgets``
and ``hospital_policies`` (keyed by hospital).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, get_type_hints

from fedledger.config import StudyConfig

IGNORED_TOP_LEVEL = ("hydra",)  # Hydra's own node, when a caller asks compose for it


class UnknownSettingError(ValueError):
    """A setting no code reads: refused instead of silently ignored."""


def unknown_settings(cfg: Mapping[str, Any], schema: type = StudyConfig, prefix: str = "") -> list[str]:
    """One line per unknown key: its dotted path, and the closest known key or the known ones."""
    hints = get_type_hints(schema)
    known = [f.name for f in dataclasses.fields(schema)]
    problems = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key not in hints:
            if not prefix and key in IGNORED_TOP_LEVEL:
                continue
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = (
                f"did you mean {prefix + close[0]!r}?"
                if close
                else f"{prefix[:-1] or 'the study'} takes {', '.join(known)}"
            )
            problems.append(f"{path!r} ({hint})")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(value, Mapping):
            problems += unknown_settings(value, hints[key], f"{path}.")
    return problems


def check_known_settings(cfg: Mapping[str, Any]) -> None:
    """Refuse a study config with a key the schema does not declare (fedledger/config.py)."""
    problems = unknown_settings(cfg)
    if problems:
        raise UnknownSettingError(
            "unknown setting(s), which nothing would read: "
            + "; ".join(problems)
            + ". A '+' override adds a key but cannot make it do anything; the settings are in fedledger/config.py"
        )


def check_hospital_keys(setting: str, entries: Mapping[str, Any], hospital_ids: list[str]) -> None:
    """Refuse an entry of a per-hospital setting (``budgets``) that names no hospital of the study."""
    for key in entries:
        if str(key) not in hospital_ids:
            close = difflib.get_close_matches(str(key), hospital_ids, n=1)
            hint = f"did you mean {setting + '.' + close[0]!r}?" if close else f"the hospitals are {hospital_ids}"
            raise UnknownSettingError(f"{setting}.{key} names no hospital of this study ({hint})")
