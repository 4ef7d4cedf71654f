"""Every kind of study in one table, and the loading of specs: a ``kind`` picks its schema and its units of work.

A kind of study supplies, in ``sweeps``, a spec on the shared base of name and results (``sweeps.base.StudyBase``,
each with its own ``resources``) and a function from a spec to its units of work (each a ``sweeps.base.Unit``: ids
from the one content hash, the table where "finished" is read, a JSON form). ``KINDS`` lists them; the spec's
``kind`` key (``lm`` when absent) chooses. Adding a kind adds its module and one entry here; nothing else in this
package asks which kind a spec is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweeps.base import SpecError, StudyBase, Unit, format_validation_error
from sweeps.branching import lm_units
from sweeps.recovery import RecoverySpec, recovery_batches
from sweeps.spec import StudySpec
from sweeps.spikes import SpikesSpec, spikes_units


@dataclass(frozen=True)
class Kind:
    """A kind of study: its ``kind`` key, its spec and how the spec expands into units of work."""

    key: str
    spec: type[StudyBase]
    units: Callable[[Any], list[Unit]]


KINDS: dict[str, Kind] = {
    kind.key: kind
    for kind in (
        Kind("lm", StudySpec, lambda spec: lm_units(spec, spec.name)),
        Kind("recovery", RecoverySpec, recovery_batches),
        Kind("spikes", SpikesSpec, spikes_units),
    )
}
"""Every kind of study, by its ``kind`` key."""

AnySpec = StudySpec | RecoverySpec | SpikesSpec


def kind_of(spec: StudyBase) -> Kind:
    return next(kind for kind in KINDS.values() if isinstance(spec, kind.spec))


def units_of(spec: StudyBase) -> list[Unit]:
    """The study's units of work, in a deterministic order."""
    return kind_of(spec).units(spec)


def parse_spec(raw: Any, source: str = "spec") -> AnySpec:
    """Validate a spec mapping; its ``kind`` (lm by default) chooses the schema."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec is a YAML mapping with keys name, data, model, grid, train, resources")
    key = raw.get("kind", "lm")
    kind = KINDS.get(key) if isinstance(key, str) else None
    if kind is None:
        raise SpecError(f"{source}: kind: unknown study kind (got {key!r}); allowed: {', '.join(KINDS)}")
    try:
        return kind.spec.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None


def load_spec(path: str | Path) -> AnySpec:
    """Read and validate a spec file (YAML, loaded with safe_load only)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise SpecError(f"{path}: not valid YAML: {first}") from None
    return parse_spec(raw, str(path))


def builtin_spec_path(name: str) -> Path:
    """The path of a ready-made study shipped in this package (laptop, smoke, complexity-control, ...)."""
    return Path(__file__).with_name(f"{name}.yaml")


def resolve_spec(name_or_path: str) -> AnySpec:
    """A spec file path, or the name of a ready-made study (laptop, smoke, complexity-control, ...)."""
    path = Path(name_or_path)
    if not path.exists() and builtin_spec_path(name_or_path).is_file():
        path = builtin_spec_path(name_or_path)
    return load_spec(path)


def dump_spec(spec: StudyBase) -> str:
    """The resolved spec as YAML (what ``RESULTS/spec.yaml`` holds; ``load_spec`` reads it back)."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
