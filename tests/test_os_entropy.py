"""The os-entropy noise source: standard normals and Poisson masks from os.urandom, no generator state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, Dataset

from coordinator.study_setup import prepare_study
from fedledger.config import PrivacyConfig, TrainConfig, check_noise_source
from fedledger.round_task import TrainReport
from fedledger.study_spec import STUDY_ENV
from fl_client.dp_training import HospitalPrivacy
from fl_client.models import build_model
from fl_client.os_entropy import gaussian_like, standard_normals, uniforms
from fl_client.settings import from_context, from_node_config
from fl_client.training import train_local
from fl_server.results import privacy_section
from fl_server.round_protocol import RoundOutcome

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook:UserWarning")


def _privacy(n=40, batch=10, **cfg):
    return HospitalPrivacy(
        PrivacyConfig(enabled=True, noise_multiplier=1.0, noise_source="os-entropy", **cfg), n, batch, 3
    )


def test_uniforms_cover_zero_to_one_evenly():
    u = uniforms(200_000)

    assert u.dtype == torch.float64 and float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert stats.kstest(u.numpy(), "uniform").pvalue > 1e-6


def test_standard_normals_are_standard_normal():
    z = standard_normals(200_001).numpy()  # odd: the last Box-Muller pair is cut

    assert z.shape == (200_001,) and np.isfinite(z).all()
    assert stats.kstest(z, "norm").pvalue > 1e-6
    assert abs(z.mean()) < 5 / math.sqrt(len(z)) and z.std() == pytest.approx(1.0, rel=0.01)


def test_gaussian_noise_has_the_asked_std_in_the_reference_dtype():
    reference = torch.zeros(100_000, dtype=torch.float32)

    noise = gaussian_like(reference, 2.5)

    assert noise.dtype == torch.float32 and noise.shape == reference.shape
    assert float(noise.double().std()) == pytest.approx(2.5, rel=0.02)
    assert torch.equal(gaussian_like(reference, 0.0), reference)


def test_os_entropy_training_draws_nothing_from_torch_generators():
    """No torch RNG is consumed for noise or sampling: the global state is as before, whatever it was."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    model = build_model("logreg", 4, seed=0)
    privacy = _privacy()
    torch.manual_seed(1234)
    before = torch.get_rng_state()

    stats_ = train_local(model, X, y, TrainConfig(local_epochs=1, batch_size=10, lr=0.1), 0, privacy)

    assert torch.equal(torch.get_rng_state(), before)
    assert stats_.steps == 4 and privacy.make_generator(0) is None and privacy.noise_source == "os-entropy"
    assert privacy.summary()["noise_source"] == "os-entropy"


def test_os_entropy_needs_no_torchcsprng_and_refuses_a_seeded_generator():
    privacy = _privacy(secure_mode=True)  # secure_mode alone would need torchcsprng

    assert privacy.make_generator(7) is None and privacy.noise_source == "os-entropy"
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="seeded generator is not allowed with os-entropy"):
        privacy.attach(model, optimizer, (torch.zeros(40, 3),), generator=torch.Generator().manual_seed(0))


class _Rows(Dataset):
    def __init__(self, X: torch.Tensor) -> None:
        self.X = X

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (self.X[i],)


def test_a_generic_data_loader_is_poisson_sampled_from_os_entropy():
    n, batch = 400, 40
    privacy = _privacy(n=n, batch=batch)
    model = torch.nn.Linear(3, 1)
    loader = DataLoader(_Rows(torch.randn(n, 3)), batch_size=batch)

    dp_model, dp_opt, dp_loader = privacy.attach(model, torch.optim.SGD(model.parameters(), lr=0.1), loader)
    sizes = [len(xb) for (xb,) in dp_loader]
    privacy.detach(dp_model)

    assert type(dp_opt).__name__ == "OsEntropyDPOptimizer"
    assert len(sizes) == n // batch and len(set(sizes)) > 1
    assert abs(sum(sizes) - n) < 5 * math.sqrt(n)  # 10 draws of Binomial(400, 0.1) each


def test_a_misspelled_noise_source_fails_before_training():
    with pytest.raises(ValueError, match=r"privacy.noise_source must be one of \('seeded', 'os-entropy'\)"):
        PrivacyConfig(noise_source="os_entropy").validate()
    with pytest.raises(ValueError, match="node config noise-source"):
        check_noise_source("urandom", "node config noise-source")
    assert check_noise_source("os-entropy") == "os-entropy"


def test_the_noise_source_reaches_the_privacy_section_of_results():
    report = TrainReport(num_examples=40, epsilon=0.5, delta=1e-5, accountant="prv", noise_source="os-entropy")
    metrics, info = report.to_wire()
    assert info == {"accountant": "prv", "noise-source": "os-entropy"}
    assert TrainReport.from_wire(metrics, info) == report
    outcome = RoundOutcome(1, "", "", ["h0"], [], 40, {}, {}, None, 0.0, 0.0, privacy={"h0": report.privacy()})

    section = privacy_section([outcome])

    assert section["h0"]["noise_source"] == "os-entropy" and section["h0"]["epsilon"] == [0.5]


def test_a_misspelled_study_noise_source_stops_the_study_before_its_set_up(tmp_path):
    with pytest.raises(ValueError, match="privacy.noise_source must be one of"):
        prepare_study({"privacy": {"noise_source": "os_entropy"}}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("privacy,expected", [({}, "seeded"), ({"noise_source": "os-entropy"}, "os-entropy")])
def test_a_simulated_hospital_takes_the_studys_noise_source(tmp_path, monkeypatch, privacy, expected):
    spec = {
        "config": {"num_hospitals": 1, "seed": 0, "dataset": {"name": "breast_cancer"}, "privacy": privacy},
        "hospitals": [{"id": "h0"}],
    }
    (tmp_path / "study.json").write_text(json.dumps(spec))
    monkeypatch.setenv(STUDY_ENV, str(tmp_path / "study.json"))

    assert from_context({"partition-id": 0}).noise_source == expected
    assert from_node_config({"hospital-id": "h0", "data-path": "x.csv"}).noise_source == "os-entropy"
