"""The server optimizer applied by the aggregator, where the aggregate is plaintext (encryption off).

Wraps the FedAvg strategy: the round's sample-weighted mean becomes a
pseudo-gradient step from the model the round started from
(fedledger/server_opt.py), and the stepped model is the round's global
model (its hash is the one committed and sent to the hospitals). With CKKS
the aggregator cannot read the mean, so it does not wrap; each hospital
steps instead (fl_client/server_step.py). The optimizer state after each
round is written to ``<run dir>/server_opt/round_XXXXX.npz``, so a resumed
study (fl_server/resume.py), which redoes the rounds after the last recorded
one, continues from that round's state. A round without an aggregate takes no step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid

from fedledger.files import load_npz, save_npz
from fedledger.model_io import flatten, unflatten
from fedledger.server_opt import HeldModel, ServerOptSettings
from fedledger.wire import ModelPayload, decode
from fl_server.strategy import RoundStrategy, StrategyWrapper, TrainResult
from fl_server.validation import ValidationOutcome

log = logging.getLogger("fedledger.server")

STATE_DIR = "server_opt"


class ServerOptStrategy(StrategyWrapper):
    """FedAvgM, FedAdam, FedYogi or FedAdagrad on the plaintext mean of the inner strategy."""

    def __init__(
        self,
        inner: RoundStrategy,
        settings: ServerOptSettings,
        template: Mapping[str, np.ndarray],
        run_dir: Path | None,
    ) -> None:
        super().__init__(inner)
        self.settings = settings
        self.template = dict(template)
        self.state_dir = Path(run_dir) / STATE_DIR if run_dir is not None else None
        self.held: HeldModel | None = None

    def _state_file(self, server_round: int) -> Path | None:
        return self.state_dir / f"round_{server_round:05d}.npz" if self.state_dir is not None else None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Hold the model this round starts from: the initial model, or the state of the round before."""
        saved = self._state_file(server_round - 1)
        if server_round == 1:
            self.held = HeldModel.start(self.settings, flatten(decode(arrays).arrays), 0)
        elif self.held is not None and self.held.round == server_round - 1:
            pass
        elif saved is not None and saved.exists():  # a resumed study
            self.held = HeldModel.unpack(load_npz(saved), self.settings, int(flatten(self.template).size))
        elif self.held is not None and self.held.round < server_round - 1:  # rounds without an aggregate
            self.held.round = server_round - 1
        else:
            raise RuntimeError(
                f"{self.settings.name} needs its state after round {server_round - 1} to continue and holds none "
                f"({saved} is missing)"
            )
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_outcome(self, server_round: int, outcome: ValidationOutcome) -> TrainResult:
        result = self.inner.aggregate_outcome(server_round, outcome)
        if result.aggregate is None or self.held is None:
            return result
        self.held.advance(server_round, flatten(result.aggregate.arrays))
        path = self._state_file(server_round)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_npz(path, self.held.pack())
        stepped = ModelPayload(arrays=unflatten(self.held.model, self.template))
        return TrainResult(stepped, result.accepted, result.rejected)

    def summary(self) -> None:
        log.info("server optimizer %s: %s", self.settings.name, self.settings)
        self.inner.summary()
