"""The last global model a hospital accepted: what it falls back to when an aggregate fails the bounds.

Kept next to the DP accountant's state (``state_dir/accepted_global_<study
id>.npz``, else Flower's per-node context state), per study, with the round
whose global model it is (0: the registered initial model). Every honest hospital that trained in
the same rounds holds the same one, so with ``on_bad_aggregate=keep-previous``
they all train the next round from the same model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context

from fedledger.files import load_npz, save_npz
from fedledger.model_io import flatten
from fl_client.settings import HospitalSettings

ARRAYS_KEY = "accepted-global-"  # + the study id
META_KEY = "accepted-global-meta-"
ROUND_ENTRY = "__round__"


@dataclass(frozen=True)
class AcceptedModel:
    """The global model after round ``round`` (0: the initial model), as this hospital accepted it."""

    round: int
    arrays: dict[str, np.ndarray]

    @property
    def flat(self) -> np.ndarray:
        return flatten(self.arrays)


def _file(settings: HospitalSettings, study_id: str) -> Path | None:
    return Path(settings.state_dir) / f"accepted_global_{study_id.lower()}.npz" if settings.state_dir else None


def save(settings: HospitalSettings, context: Context, study_id: str, accepted: AcceptedModel) -> None:
    """Persist the accepted model (state file and context state), before the reply leaves the hospital."""
    context.state.array_records[ARRAYS_KEY + study_id.lower()] = ArrayRecord(
        array_dict={k: Array(np.ascontiguousarray(v)) for k, v in accepted.arrays.items()}
    )
    meta = ConfigRecord({"meta": json.dumps({"round": accepted.round})})
    context.state.config_records[META_KEY + study_id.lower()] = meta
    path = _file(settings, study_id)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz(path, {**accepted.arrays, ROUND_ENTRY: np.array(accepted.round, dtype=np.int64)})


def load(settings: HospitalSettings, context: Context, study_id: str) -> AcceptedModel | None:
    """The study's last accepted model (state file first, else context state); None when this hospital holds none."""
    path = _file(settings, study_id)
    if path is not None and path.exists():
        arrays = load_npz(path)
        r = int(arrays.pop(ROUND_ENTRY))
        return AcceptedModel(r, arrays)
    arrays_key, meta_key = ARRAYS_KEY + study_id.lower(), META_KEY + study_id.lower()
    if arrays_key in context.state.array_records and meta_key in context.state.config_records:
        record = context.state.array_records[arrays_key]
        meta = json.loads(str(context.state.config_records[meta_key]["meta"]))
        return AcceptedModel(int(meta["round"]), {k: record[k].numpy() for k in record})
    return None
