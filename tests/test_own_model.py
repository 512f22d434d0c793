"""Issue 14: the researcher's own model (model=own model._target_=...) and own data loader (dataset=own)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedledger.ckks.params import CKKSParams, UpdateTooLargeError, check_update_size, update_size_bound
from fedledger.config import check_own_model
from fedledger.hashing import model_hash, to_hex
from fedledger.model_source import ModelSourceError, source_hash
from fedledger.protocol import protocol_hash
from fedledger.round_task import RoundTask
from fl_client.client_app import train
from fl_client.data import HospitalData, load_hospital, load_hospitals
from fl_client.data.errors import ConfigError
from fl_client.data.own_loader import LoaderContractError
from fl_client.models import IncompatibleModelError, get_arrays
from fl_client.own_model import OwnModelError, build_own_model, build_study_model
from tests.test_client_app import context, node_config, round_config, task, task_identity  # noqa: F401
from tests.test_unknown_settings import composed

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_model"
TARGET = "mynet.SmallNet"


@pytest.fixture
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))


def _module(tmp_path: Path, monkeypatch, name: str, source: str) -> None:
    """A module ``name`` importable from tmp_path, holding ``source``."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.delitem(sys.modules, name, raising=False)  # another test's module of that name
    monkeypatch.syspath_prepend(str(tmp_path))


# -- building and checking the model ---------------------------------------------------


def test_the_example_is_refused_without_the_fix_and_the_refusal_offers_it(example_on_path):
    with pytest.raises(IncompatibleModelError) as exc:
        build_own_model(TARGET, {}, n_features=5)
    assert "BatchNorm" in str(exc.value) and "model.fix_batchnorm=true" in str(exc.value)


def test_the_fix_replaces_batchnorm_with_groupnorm_and_says_so(example_on_path, caplog):
    # act
    model = build_own_model(TARGET, {"channels": 2}, n_features=5, seed=0, fix_batchnorm=True)
    # assert
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm1d not in kinds
    assert "norm: BatchNorm1d -> GroupNorm" in caplog.text
    assert model(torch.zeros(3, 5)).shape == (3,)
    # 2 channels x 5 features + 1 (out) + conv 2*3+2 + GroupNorm 2+2
    assert sum(p.numel() for p in model.parameters()) == 11 + 8 + 4


def test_the_same_seed_builds_the_same_model(example_on_path):
    a = get_arrays(build_own_model(TARGET, {}, 4, seed=3, fix_batchnorm=True))
    b = get_arrays(build_own_model(TARGET, {}, 4, seed=3, fix_batchnorm=True))
    c = get_arrays(build_own_model(TARGET, {}, 4, seed=4, fix_batchnorm=True))
    assert model_hash(a) == model_hash(b) != model_hash(c)


@pytest.mark.parametrize(
    "source,target,message",
    [
        ("", "nosuchmodule_h7.Net", "module 'nosuchmodule_h7' is not importable"),
        ("x = 1\n", "ownmod_a.Net", "has no attribute 'Net'"),
        ("Net = 3\n", "ownmod_b.Net", "not a torch.nn.Module subclass"),
        ("from torch.nn import Linear as Net\n", "ownmod_c.Net", "is defined in 'torch.nn.modules.linear'"),
        (
            "from torch import nn\nclass Net(nn.Module):\n    def __init__(self, n_features):\n"
            "        super().__init__(); self.l = nn.Linear(n_features, 1)\n"
            "    def forward(self, x):\n        return self.l(x)\n",
            "ownmod_d.Net",
            "returns (2, 1) for a batch of shape (2, 3); the task needs (2,): one logit per row (end forward with "
            ".squeeze(-1))",
        ),
        (
            "from torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n",
            "ownmod_e.Net",
            "its __init__ must take n_features",
        ),
    ],
)
def test_a_model_that_cannot_be_a_study_model_is_refused_by_name(tmp_path, monkeypatch, source, target, message):
    if source:
        _module(tmp_path, monkeypatch, target.split(".")[0], source)
    with pytest.raises(OwnModelError) as exc:
        build_own_model(target, {}, n_features=3)
    assert message in str(exc.value)


MULTI = (
    "from torch import nn\nclass Net(nn.Module):\n    def __init__(self, n_features, out_features=1):\n"
    "        super().__init__(); self.l = nn.Linear(n_features, out_features)\n"
    "    def forward(self, x):\n        return self.l(x)\n"
)


def test_a_multiclass_task_gives_the_class_out_features_and_wants_one_output_each(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "ownmod_multi", MULTI)
    model = build_own_model("ownmod_multi.Net", {}, n_features=4, n_outputs=3)
    assert model(torch.zeros(5, 4)).shape == (5, 3)
    with pytest.raises(OwnModelError, match="model.kwargs.out_features is set by the study"):
        build_own_model("ownmod_multi.Net", {"out_features": 3}, n_features=4, n_outputs=3)


def test_a_class_without_out_features_cannot_serve_a_multiclass_task(tmp_path, monkeypatch):
    _module(tmp_path, monkeypatch, "ownmod_bin", MULTI.replace(", out_features=1", "").replace("out_features)", "1)"))
    with pytest.raises(OwnModelError, match="its __init__ must take n_features and out_features"):
        build_own_model("ownmod_bin.Net", {}, n_features=4, n_outputs=3)


def test_own_model_keys_need_model_own_and_model_own_needs_a_target():
    assert check_own_model({"name": "own", "_target_": TARGET}) == TARGET
    assert check_own_model({"name": "logreg", "kwargs": {}, "fix_batchnorm": False}) is None
    with pytest.raises(ValueError, match="model=own needs model._target_"):
        check_own_model({"name": "own", "_target_": None})
    with pytest.raises(ValueError, match="add model=own"):
        check_own_model({"name": "logreg", "_target_": TARGET})
    with pytest.raises(ValueError, match="model.kwargs belongs to your own model"):
        check_own_model({"name": "mlp", "kwargs": {"width": 3}})


def test_model_own_composes_with_declared_keys_and_builds(example_on_path):
    cfg = composed(["model=own", f"model._target_={TARGET}", "+model.kwargs.channels=3", "model.fix_batchnorm=true"])
    assert cfg["model"] == {
        "name": "own",
        "hidden": 0,
        "_target_": TARGET,
        "kwargs": {"channels": 3},
        "fix_batchnorm": True,
    }
    assert build_study_model(cfg["model"], 4, seed=0).conv.out_channels == 3


# -- the CKKS size limit -----------------------------------------------------------------


def test_a_model_too_large_for_the_ckks_update_limit_is_refused_with_the_numbers():
    # arrange: N 8192 -> 4096 slots; the limit fits exactly one ciphertext
    one_ct = update_size_bound(4096, CKKSParams())[1]
    params = replace(CKKSParams(), max_update_bytes=one_ct)
    # act / assert
    assert check_update_size(4096, params) == 1
    with pytest.raises(UpdateTooLargeError) as exc:
        check_update_size(4097, params)
    assert "4097 parameters: 2 ciphertexts of 4096 slots" in str(exc.value)
    assert f"up to {2 * one_ct} bytes per update, over encryption.max_update_bytes={one_ct}" in str(exc.value)


def test_the_size_bound_is_the_aggregators_per_ciphertext_limit():
    # n 8192, one data prime: members 73 + 24 + 2*8192*8 + 81 + 64 = 131314; wrapper 112 + 3 * (1 + 2) zstd blocks
    assert update_size_bound(1, CKKSParams()) == (1, 131314 + 112 + 9)


# -- the source hash -----------------------------------------------------------------------


def test_source_hash_vector_is_the_plain_sha256_of_the_module_file(tmp_path, monkeypatch):
    # docs/HASHES.md 3b: `sha256sum ownsrc_v.py` gives the same digest; locating the file runs none of its code
    _module(tmp_path, monkeypatch, "ownsrc_v", "class A:\n    pass\n")
    assert source_hash("ownsrc_v.A") == "0x80a5f68c47c57a8d271e3ede265d3d689f45c51bdd4723e1e7686e4d6688b502"
    _module(tmp_path, monkeypatch, "ownsrc_boom", "raise RuntimeError('must not run')\n")
    assert source_hash("ownsrc_boom.A") == to_hex(hashlib.sha256(b"raise RuntimeError('must not run')\n").digest())


def test_source_hash_refuses_what_has_no_source():
    with pytest.raises(ModelSourceError, match="not importable here"):
        source_hash("nosuchmodule_h7.Net")
    with pytest.raises(ModelSourceError, match="dotted path"):
        source_hash("Net")
    with pytest.raises(ModelSourceError, match="has no Python source file"):
        source_hash("math.sqrt")


# -- the protocol and the hospital -------------------------------------------------------


def _own_task(initial_hash: str, source: str, **extra) -> object:
    return round_config(
        initial_hash,
        **{"model": "own", "model-target": TARGET, "model-source-hash": source, "model-fix-batchnorm": True, **extra},
    )


def test_the_own_model_fields_are_in_the_protocol_and_absent_for_a_builtin(example_on_path):
    builtin = RoundTask.from_wire(dict(round_config("")))
    own = RoundTask.from_wire(dict(_own_task("", source_hash(TARGET))))
    changed = [
        replace(own, model_target="mynet.Other"),
        replace(own, model_kwargs={"channels": 2}),
        replace(own, model_source_hash="0x" + "00" * 32),
        replace(own, model_fix_batchnorm=False),
    ]
    assert len({protocol_hash(t) for t in [own, *changed]}) == 5
    # a built-in model ignores them: kwargs without a target hash as before
    assert protocol_hash(replace(builtin, model_kwargs={"x": 1})) == protocol_hash(builtin)
    assert RoundTask.from_wire(own.to_wire()) == own


@pytest.fixture
def own_initial(example_on_path):
    return get_arrays(build_own_model(TARGET, {}, 30, seed=0, fix_batchnorm=True))


def test_a_hospital_trains_the_own_model_from_its_installed_copy(own_initial):
    cfg = _own_task(to_hex(model_hash(own_initial)), source_hash(TARGET))
    reply = train(task(own_initial, cfg), context(node_config()))
    assert "refusal" not in reply.content.config_records
    assert reply.content.metric_records["metrics"]["num-examples"] > 100


@pytest.mark.parametrize(
    "registered,policy,code",
    [
        ("0x" + "ab" * 32, {}, "policy-model-source-mismatch"),
        (None, {"allowed-model-sources": "0x" + "cd" * 32}, "policy-model-not-allowed"),
        (None, {"allowed-models": "logreg,mlp"}, "policy-model-not-allowed"),
    ],
)
def test_a_hospital_refuses_an_own_model_its_copy_or_policy_does_not_match(own_initial, registered, policy, code):
    cfg = _own_task(to_hex(model_hash(own_initial)), registered or source_hash(TARGET))
    reply = train(task(own_initial, cfg), context(node_config(**policy)))
    assert reply.content.config_records["refusal"]["code"] == code


def test_a_hospital_without_the_module_refuses_and_runs_nothing(own_initial):
    cfg = _own_task(to_hex(model_hash(own_initial)), source_hash(TARGET), **{"model-target": "notinstalled_h7.Net"})
    reply = train(task(own_initial, cfg), context(node_config()))
    assert reply.content.config_records["refusal"]["code"] == "policy-model-not-installed"


def test_a_hospital_allows_the_source_hash_on_its_allow_list(own_initial):
    digest = source_hash(TARGET)
    cfg = _own_task(to_hex(model_hash(own_initial)), digest)
    reply = train(task(own_initial, cfg), context(node_config(**{"allowed-model-sources": digest})))
    assert "refusal" not in reply.content.config_records


# -- the own data loader ------------------------------------------------------------------

OWN_DATA = {"name": "own", "_target_": "ownloader_t.load", "kwargs": {}}


def _loader(tmp_path: Path, monkeypatch, body: str) -> None:
    _module(
        tmp_path, monkeypatch, "ownloader_t", "import numpy as np\n\ndef load(index, num_hospitals, seed):\n" + body
    )


GOOD = (
    "    X = np.arange(12, dtype=float).reshape(6, 2)\n"
    "    return dict(hospital_id=f'h{index}', X_train=X[:4], y_train=[0, 1, 0, 1], X_test=X[4:], y_test=[1, 0],\n"
    "                feature_names=['a', 'b']{extra})\n"
)


def test_the_example_loader_gives_every_hospital_its_rows(example_on_path):
    cfg = {"name": "own", "_target_": "mydata.load", "kwargs": {"n_features": 6}}
    hospitals = load_hospitals(cfg, 3, seed=0)
    assert [h.hospital_id for h in hospitals] == ["site_1", "site_2", "site_3"]
    assert sum(h.n_train + h.n_test for h in hospitals) == 569 and hospitals[0].n_features == 6
    assert load_hospital(cfg, 1, 3, 0) == hospitals[1]


def test_a_loader_returning_the_contract_as_a_mapping_is_accepted(tmp_path, monkeypatch):
    _loader(tmp_path, monkeypatch, GOOD.replace("{extra}", ""))
    h = load_hospital(OWN_DATA, 0, 2, 0)
    assert isinstance(h, HospitalData) and h.X_train.dtype == np.float32 and h.X_train.shape == (4, 2)


@pytest.mark.parametrize(
    "extra,message",
    [
        (", X_val=[[1.0]], y_val=[0]", "X_val has 1 columns, feature_names names 2"),
        (", X_val=[[1.0, 2.0]], y_val=[2]", "y_val must hold labels 0 and 1, also holds [2.0]"),
        (", X_val=[[np.nan, 2.0]], y_val=[1]", "X_val holds 1 NaN or infinite values"),
        (", X_val=[1.0, 2.0], y_val=[1]", "X_val has shape (2,), expected (n, d)"),
        (", X_val=[[1.0, 2.0]], y_val=[1, 0]", "X_val has 1 rows, y_val 2 labels"),
        (", colour='red'", "has unknown keys ['colour']"),
    ],
)
def test_a_loader_breaking_the_contract_is_refused_naming_the_field(tmp_path, monkeypatch, extra, message):
    _loader(tmp_path, monkeypatch, GOOD.replace("{extra}", extra))
    with pytest.raises(LoaderContractError) as exc:
        load_hospital(OWN_DATA, 0, 2, 0)
    assert message in str(exc.value) and "dataset._target_='ownloader_t.load' for hospital 0" in str(exc.value)


def test_a_multiclass_loader_returns_class_indices_below_its_output_count(tmp_path, monkeypatch):
    multi = ", task='multiclass', num_outputs=3, X_val=[[1.0, 2.0]], y_val=[{label}]"
    _loader(tmp_path, monkeypatch, GOOD.replace("{extra}", multi.replace("{label}", "2")))
    h = load_hospital(OWN_DATA, 0, 2, 0)
    assert (h.task, h.num_outputs, h.y_val.tolist()) == ("multiclass", 3, [2.0])
    _loader(tmp_path, monkeypatch, GOOD.replace("{extra}", multi.replace("{label}", "3")))
    with pytest.raises(
        LoaderContractError, match=r"y_val must hold class indices 0..2 \(num_outputs 3\), also holds \[3.0\]"
    ):
        load_hospital(OWN_DATA, 0, 2, 0)


def test_loader_ids_must_differ_and_features_agree(tmp_path, monkeypatch):
    _loader(tmp_path, monkeypatch, GOOD.replace("f'h{index}'", "'same'").replace("{extra}", ""))
    with pytest.raises(LoaderContractError, match="hospital ids repeat"):
        load_hospitals(OWN_DATA, 2, 0)


def test_a_loader_that_is_not_there_or_takes_other_arguments_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="module 'nosuchloader_h7' is not importable"):
        load_hospital({**OWN_DATA, "_target_": "nosuchloader_h7.load"}, 0, 2, 0)
    _loader(tmp_path, monkeypatch, GOOD.replace("{extra}", ""))
    with pytest.raises(ConfigError, match="must take index, num_hospitals, seed and the keys of dataset.kwargs"):
        load_hospital({**OWN_DATA, "kwargs": {"rows": 3}}, 0, 2, 0)
    with pytest.raises(ConfigError, match="unknown key"):
        load_hospital({**OWN_DATA, "path": "x"}, 0, 2, 0)


# -- export ----------------------------------------------------------------------------------


def _own_run_dir(run: Path, source: str) -> dict[str, np.ndarray]:
    """A finished one-round study of the example model and loader: results.json and its checkpoint."""
    from fedledger.files import save_npz

    arrays = get_arrays(build_own_model(TARGET, {}, 6, seed=1, fix_batchnorm=True))
    save_npz(run / "checkpoints" / "round_00001.npz", arrays)
    model = {"name": "own", "hidden": 0, "_target_": TARGET, "kwargs": {}, "fix_batchnorm": True}
    dataset = {"name": "own", "_target_": "mydata.load", "kwargs": {"n_features": 6}}
    results = {
        "config": {"dataset": dataset, "model": model, "num_hospitals": 2},
        "rounds": [{"round": 1}],
        "protocol": {"model-source-hash": source},
    }
    (run / "results.json").write_text(json.dumps(results))
    return arrays


def test_an_exported_own_model_loads_from_the_installed_source_the_study_ran(tmp_path, example_on_path):
    from experiments.export import export_model, load_model

    arrays = _own_run_dir(tmp_path, source_hash(TARGET))
    exported = load_model(export_model(tmp_path))
    assert exported.meta["model"]["source_hash"] == source_hash(TARGET)
    assert (
        exported.meta["feature_names"]
        == load_hospital({"name": "own", "_target_": "mydata.load", "kwargs": {"n_features": 6}}, 0, 1, 0).feature_names
    )
    assert model_hash(get_arrays(exported.module)) == model_hash(arrays)
    assert exported.predict(np.zeros((3, 6))).shape == (3,)


def test_an_exported_own_model_is_refused_when_the_installed_source_differs(tmp_path, example_on_path):
    from experiments.export import ExportError, export_model, load_model

    _own_run_dir(tmp_path, "0x" + "ab" * 32)
    with pytest.raises(ExportError, match="but the study ran source 0xabab"):
        load_model(export_model(tmp_path))


# -- the whole study, from examples/ -----------------------------------------------------


@pytest.mark.slow
def test_a_study_of_the_example_model_and_loader_runs_with_dp_ckks_ledger_and_audit(tmp_path):
    """The README's command: 2 hospitals, 2 rounds, DP + CKKS + ledger, the audit PASS."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(EXAMPLE)])}
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        f"hydra.run.dir={tmp_path}",
        "model=own",
        f"model._target_={TARGET}",
        "model.fix_batchnorm=true",
        "dataset=own",
        "dataset._target_=mydata.load",
        "num_hospitals=2",
        "num_rounds=2",
        "ledger=eth_tester",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    digest = to_hex(hashlib.sha256((EXAMPLE / "mynet.py").read_bytes()).digest())
    assert results["protocol"]["model-target"] == TARGET and results["protocol"]["model-source-hash"] == digest
    assert results["protocol"]["model-fix-batchnorm"] is True and results["protocol"]["model"] == "own"
    assert results["encryption"]["scheme"] == "ckks" and len(results["ledger"]["rounds"]) == 2
    assert set(results["privacy"]) == {"site_1", "site_2"}
    assert results["audit"]["ok"] is True
    assert results["final"]["accuracy"] > 0.7  # majority class ~0.63
