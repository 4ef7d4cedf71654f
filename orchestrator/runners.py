"""Which runner (`orchestrator.runner.Runner`) runs each type of unit. Adding a type of unit adds one entry here."""

from __future__ import annotations

from orchestrator.branching import BranchRunner
from orchestrator.lm import TrialRunner
from orchestrator.recovery import RecoveryRunner
from orchestrator.runner import Runner
from orchestrator.spikes import FunctionRunner
from sweeps.branching import StableRun
from sweeps.grid import TrialConfig
from sweeps.recovery import RecoveryBatch
from sweeps.spikes import FunctionRun

RUNNERS: dict[type, Runner] = {
    TrialConfig: TrialRunner(),
    RecoveryBatch: RecoveryRunner(),
    FunctionRun: FunctionRunner(),
    StableRun: BranchRunner(),
}
