"""Shared fixtures: one real local Ray per test session, and helpers to point specs at temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.spec import StudySpec


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray on 127.0.0.1 with 2 CPUs and no dashboard, shared by the tests that need one."""
    import ray

    from orchestrator.study import start_ray

    start_ray(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token cache for the session, so each corpus is tokenized once."""
    return tmp_path_factory.mktemp("token-cache")


def relocated(spec: StudySpec, results: Path, cache: Path) -> StudySpec:
    """`spec` writing its results to `results` and its token cache to `cache`."""
    data = spec.data.model_copy(update={"cache_dir": str(cache)})
    return spec.model_copy(update={"results": str(results), "data": data})


@pytest.fixture(scope="session")
def relocate():
    return relocated


@pytest.fixture(scope="session")
def tiny_study(token_cache: Path):
    """Build a tiny LM study on the synthetic corpus (one 1x32 llama, seq_len 32, batch 8) as a spec mapping.

    Call it as ``tiny_study(name, results, model=..., grid=..., train=...)``: each given section replaces the default.
    """

    def build(name: str, results: Path, **sections: object) -> dict:
        spec = {
            "name": name,
            "results": str(results),
            "data": {
                "corpus": "synthetic",
                "synthetic": {"vocab_size": 64, "branching": 8, "tokens": 100_000},
                "eval_tokens": 1024,
                "cache_dir": str(token_cache),
            },
            "model": {"sizes": ["1x32"], "head_dim": 16, "seq_len": 32},
            "train": {"batch_size": 8},
        }
        return {**spec, **sections}

    return build


# Seconds each of the longest test files took in CI (.ci/run on 2 cores, two test processes, December 2026).
# Only an ordering hint: update it when a file's time changes much.
SECONDS = {
    "orchestrator/test_faults.py": 230,
    "orchestrator/test_branching_workers.py": 130,  # measured alone (-n 0) on 2 cores: 125 s
    "orchestrator/test_distributed_trial.py": 90,  # one of its two cases moved to test_branching_workers.py
    "orchestrator/test_driver_death.py": 173,
    "models/probes/test_recovery.py": 130,
    "orchestrator/test_submit.py": 119,
    "orchestrator/test_branching.py": 100,
    "orchestrator/test_spikes_study.py": 90,
    "orchestrator/test_disk_full.py": 80,
    "orchestrator/test_data_identity.py": 40,
    "orchestrator/test_lock.py": 30,
    "orchestrator/test_study.py": 85,
    "orchestrator/test_load.py": 80,
    "models/test_distributed.py": 80,
    "orchestrator/test_probes.py": 65,
    "orchestrator/test_tracking.py": 30,
    "orchestrator/test_tracking_study.py": 25,
    "analysis/test_cli.py": 50,
    "analysis/test_recommend.py": 25,
    "analysis/test_isoflop.py": 25,
    "test_safety.py": 44,
    "models/test_compile.py": 44,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest test files first (``SECONDS``), then the other files with Ray tests, then those with other slow
    tests, then the rest (each group in its usual order). The two test processes (pytest-xdist, a file at a time)
    then start the longest work first and finish together, instead of one waiting for the other's last long file
    (longest-processing-time-first scheduling)."""
    tests = Path(__file__).parent
    rank: dict[Path, tuple[int, int]] = {}
    for item in items:
        weight = 0 if item.get_closest_marker("ray") else 1 if item.get_closest_marker("slow") else 2
        seconds = SECONDS.get(item.path.relative_to(tests).as_posix(), 0)
        rank[item.path] = min(rank.get(item.path, (-seconds, weight)), (-seconds, weight))
    items.sort(key=lambda item: rank[item.path])
