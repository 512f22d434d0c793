"""A simulated hospital's policy: the study's ``hospital_policies`` entry, checked at set-up, read as its own.

The keys are those of a deployed hospital's node config (fl_client/policy.py);
a hospital without an entry keeps the default policy (from its budget).
"""

from __future__ import annotations

import json

import pytest

from fedledger.study_spec import STUDY_ENV
from fl_client.policy import PolicyError, load_policy, policies_by_hospital
from fl_client.settings import HospitalSettings, from_context, load_spec

IDS = ["hospital_0", "hospital_1"]


def test_entries_by_id_or_index_resolve_to_hospital_ids():
    entries = {"hospital_1": {"allowed-models": ["mlp"]}, "0": {"max-epsilon": 0.5}}

    assert policies_by_hospital(entries, IDS) == {
        "hospital_1": {"allowed-models": ["mlp"]},
        "hospital_0": {"max-epsilon": 0.5},
    }


@pytest.mark.parametrize(
    "entries, named",
    [
        ({"hospital_1": {"allowed-model": ["mlp"]}}, "allowed-model"),  # a misspelled key
        ({"hospital_1": {"max-epsilon": -1}}, "max-epsilon"),  # a bad value
        ({"hospital_7": {"max-epsilon": 1}}, "hospital_7"),  # no such hospital
        ({"2": {"max-epsilon": 1}}, "'2'"),  # no such index
        ({"hospital_0": {"max-epsilon": 1}, "0": {"max-epsilon": 2}}, "two policy entries"),
        ({"hospital_0": ["max-epsilon"]}, "mapping"),
    ],
)
def test_a_bad_entry_fails_at_set_up_naming_it(entries, named):
    with pytest.raises(PolicyError, match=named):
        policies_by_hospital(entries, IDS)


def test_a_simulated_hospital_reads_its_entry_from_the_study_spec(tmp_path, monkeypatch):
    spec = {
        "config": {"num_hospitals": 2, "seed": 0, "dataset": {"name": "breast_cancer"}, "privacy": {}},
        "hospitals": [
            {"id": "hospital_0", "budget": None},
            {"id": "hospital_1", "budget": None, "policy": {"allowed-models": ["mlp"], "max-epsilon": 2}},
        ],
    }
    (tmp_path / "study.json").write_text(json.dumps(spec))
    monkeypatch.setenv(STUDY_ENV, str(tmp_path / "study.json"))
    load_spec.cache_clear()

    with_entry = from_context({"partition-id": 1})
    without = from_context({"partition-id": 0})

    policy = load_policy({"partition-id": 1}, with_entry)
    assert policy.allowed_models == ("mlp",) and policy.max_epsilon == 2.0 and policy.require_dp
    assert without.policy is None and load_policy({"partition-id": 0}, without) == load_policy({}, without)
    assert not load_policy({}, without).require_dp  # no budget, no entry: the default policy, as before


def test_a_misspelled_key_that_reached_a_spec_still_fails_when_the_hospital_loads_it():
    settings = HospitalSettings("hospital_1", 1, 2, 0, "{}", policy=json.dumps({"allowed-model": ["mlp"]}))

    with pytest.raises(PolicyError, match="allowed-model"):
        load_policy({}, settings)
