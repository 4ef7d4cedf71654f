"""The ids of the ready-made studies' units do not change by refactoring: old results stay valid.

Known answer: the digest of the sorted ids each study had when this test was written (schema of ids version 2 for
language-model trials, version 1 for recovery tasks and function runs). A change of what a unit computes must
change its id, by decision (an ``ID_VERSION`` bump, with the digest updated here in the same commit); anything else
that changes a digest here is a bug.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from sweeps.studies import builtin_spec_path, load_spec, units_of
from sweeps.tables import TABLES

DIGESTS = {
    "smoke": ("e4b911c6fd9b1cae", 16),
    "laptop": ("276f22bd8540764f", 30),  # wsd with cooldown branches since issue 13
    "isoflop": ("9dd6a6763ed7cadc", 21),  # a flops grid (issue 14): ids of the D each budget gives each size
    # Before its corpus is fingerprinted; a run's ids name the python-stdlib text, which differs between Pythons.
    "laptop-text": ("2cbf9f3e771d1d06", 12),
    "complexity-control": ("4d8399c296168c6b", 45),
    "adam-spikes": ("b3b384edac012f31", 6),
    "recovery-matrix": ("0c07d11999309b60", 277),
    "recovery-tanh": ("a662d1588c885be9", 56),
    "recovery-neuron": ("0092e99ff7622614", 160),
}


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_ready_made_unit_ids_are_unchanged(name: str) -> None:
    ids = sorted(unit_id for unit in units_of(load_spec(builtin_spec_path(name))) for unit_id in unit.unit_ids)
    assert (hashlib.sha256(",".join(ids).encode()).hexdigest()[:16], len(ids)) == DIGESTS[name]


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_every_unit_crosses_the_process_boundary_unchanged_and_names_a_real_table(name: str) -> None:
    """What a Ray worker rebuilds from a unit's JSON config is the same unit (same ids, same config), and the table
    it writes to is declared."""
    for unit in units_of(load_spec(builtin_spec_path(name))):
        wire = json.loads(json.dumps(unit.to_config()))
        rebuilt = type(unit).from_config(wire)
        assert rebuilt == unit
        assert rebuilt.unit_ids == unit.unit_ids
        assert type(unit).TABLE in TABLES
