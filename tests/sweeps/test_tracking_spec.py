"""The ``tracking`` section: switches and settings, no credential in a spec, and never part of a trial's id."""

from __future__ import annotations

import pytest

from sweeps.base import SpecError
from sweeps.grid import TrialConfig, expand
from sweeps.spec import MLflowTracking, WandbTracking
from sweeps.studies import builtin_spec_path, load_spec, parse_spec, read_yaml

SMOKE = read_yaml(builtin_spec_path("smoke").read_text(), "smoke.yaml")


def with_tracking(tracking: object) -> dict:
    return {**SMOKE, "tracking": tracking}


def test_tracking_changes_no_trial_id() -> None:
    plain = [t.trial_id for t in expand(load_spec(builtin_spec_path("smoke")))]
    tracked = expand(parse_spec(with_tracking({"tensorboard": True, "mlflow": True, "wandb": {"project": "p"}})))
    assert [t.trial_id for t in tracked] == plain
    assert all(t.tracking is not None and t.tracking.names == ("tensorboard", "mlflow", "wandb") for t in tracked)


def test_true_turns_a_tracker_on_with_its_defaults_and_false_off() -> None:
    tracking = parse_spec(with_tracking({"mlflow": True, "wandb": True, "tensorboard": False})).tracking
    assert tracking is not None
    assert (tracking.mlflow, tracking.wandb, tracking.names) == (MLflowTracking(), WandbTracking(), ("mlflow", "wandb"))
    assert (tracking.wandb.project, tracking.wandb.mode, tracking.mlflow.tracking_uri) == ("scalesweep", None, None)
    assert parse_spec(with_tracking({"mlflow": False})).tracking.names == ()  # type: ignore[union-attr]


def test_a_trial_carries_its_tracking_across_the_process_boundary() -> None:
    trial = expand(parse_spec(with_tracking({"mlflow": {"tracking_uri": "http://127.0.0.1:5000"}})))[0]
    back = TrialConfig.from_config(trial.to_config())
    assert back == trial and back.tracking.mlflow.tracking_uri == "http://127.0.0.1:5000"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tracking", "says"),
    [
        ({"mlflow": {"tracking_uri": "https://me:hunter2@mlflow.example:5000"}}, "must not carry credentials"),
        ({"mlflow": {"uri": "http://x"}}, "unknown key"),
        ({"wandb": {"mode": "disabled"}}, "'offline' or 'online'"),
        ({"tensorbord": True}, "unknown key"),
    ],
)
def test_a_bad_tracking_section_is_one_line(tracking: dict, says: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(with_tracking(tracking))
    message = str(err.value)
    assert says in message and "\n" not in message
    assert "hunter2" not in message  # an error line may land in a CI log
