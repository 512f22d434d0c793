"""One hospital answers one statistics query: compute, suppress, charge its budget, add noise, encrypt, sign.

Order matters: the budget is charged before any noisy number exists (a
refused query releases nothing); suppression comes before the noise (the
calibration pays for it); the noisy vector leaves the hospital only
encrypted under the study's CKKS key, in units of each cell's sensitivity
(fedledger.stats.layout.cell_units), so that the aggregator sums it with
the public context alone. The hospital signs its epsilon charge
(fedledger.query_charge) for the chain's query record.

With ``state_file`` (a hospital with a state dir: hospital_runtime.privacy_state_file)
the account is resumed from, and its charge saved to, the same file the
hospital's training reads, so that queries and training spend one budget per
study; the account must then be built as training builds it
(hospital_runtime.privacy_for), and a file of another study is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tenseal as ts
from eth_account.signers.local import LocalAccount

from fedledger.ckks import encrypt_update
from fedledger.commitment import Domain, epsilon_to_micro
from fedledger.dp.composition import QueryCharge
from fedledger.hashing import to_hex
from fedledger.query_charge import EpsilonCharge, sign_charge
from fedledger.stats.calibration import calibrate
from fedledger.stats.layout import cell_units
from fedledger.stats.query import StatsQuery
from fl_client.accounting import BudgetExceededError, PrivacyAccount
from fl_client.stats.local import local_statistics
from fl_client.stats.noise import add_noise
from fl_client.stats.suppress import suppress_small_cells


class QueryRefused(RuntimeError):
    """The hospital declines the query (protocol, budget); the message says why."""


@dataclass(frozen=True)
class SiteAnswer:
    """What leaves the hospital: ciphertexts, its signed charge, and its suppression statement."""

    hospital: str
    query_hash: bytes
    ciphertexts: list[bytes]
    charge: EpsilonCharge
    signature: bytes
    signer: str
    suppression: str


def charge_for(query: StatsQuery) -> QueryCharge:
    """The query as the accountant composes it (fedledger.dp.composition)."""
    cal = calibrate(query)
    return QueryCharge(to_hex(query.hash()), query.mechanism, query.epsilon, cal.noise_multiplier)


def answer_query(
    hospital: str,
    rows: pd.DataFrame,
    query: StatsQuery,
    *,
    secret_context: ts.Context,
    account: PrivacyAccount,
    signer: LocalAccount,
    domain: Domain,
    study_id: bytes,
    per_site_allowed: bool,
    rng: np.random.Generator,
    state_file: Path | None = None,
) -> SiteAnswer:
    """The hospital's whole answer (module docstring); :class:`QueryRefused` when it declines."""
    if query.per_site and not per_site_allowed:
        raise QueryRefused(
            f"{hospital}: the query asks for per-site figures, which this study's registered protocol "
            "does not allow (privacy.stats_per_site is false)"
        )
    exact = local_statistics(rows, query)
    released, suppression = suppress_small_cells(exact, query)
    if state_file is not None:
        try:
            account.load_state(state_file)
        except ValueError as exc:  # the saved account is another study's, or of another plan
            raise QueryRefused(f"{hospital}: its privacy account at {state_file} cannot be used: {exc}") from exc
    try:
        added, total = account.charge_query(charge_for(query))
    except BudgetExceededError as exc:
        raise QueryRefused(f"{hospital}: {exc}") from exc
    if state_file is not None:
        account.save_state(state_file)  # charged before any noisy number exists
    noisy = add_noise(released, calibrate(query), rng)
    blobs = encrypt_update(secret_context, noisy / cell_units(query), 1.0)
    charge = EpsilonCharge(study_id, query.hash(), epsilon_to_micro(added), epsilon_to_micro(total))
    return SiteAnswer(
        hospital,
        query.hash(),
        blobs,
        charge,
        sign_charge(signer, domain, charge),
        signer.address,
        suppression.statement(),
    )
