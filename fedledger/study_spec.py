"""The study spec (``study.json``): the one file that tells every process of a study what it is.

The coordinator writes it (coordinator/study_setup.py); the aggregator and
simulated hospitals find it through ``$FEDLEDGER_STUDY`` when no run config
or node config names it.
"""

from __future__ import annotations

STUDY_ENV = "FEDLEDGER_STUDY"
