"""What every kind of study shares: strict spec models, the study's name and results, one content-hash identity, and
one-line errors.

Every spec is a pydantic model with ``extra="forbid"``, so a typo is an error and not a silently ignored key. A bad
spec raises :class:`SpecError` whose message is one line naming the field, the value and what is allowed; the CLI
prints it and exits with code 2 before anything starts.

Identity: every unit of work (a language-model trial, a recovery task, a function run) is named by
:func:`content_id`, a short hash of its resolved *semantic* config — what it computes, not where it runs or where its
results go — so a rerun skips finished units and a grown axis runs only the new ones (Marin's executor hashes a
step's versioned config the same way).
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from collections.abc import Mapping
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sweeps.errors import InputError

ID_LENGTH = 12


class SpecError(InputError):
    """A spec that cannot be run. The message is one line meant for the user."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
StudyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=255)]
"""A study's name: also the default results directory ``results/<name>``, so no longer than a file name can be."""
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A random seed: what numpy's generators and ``torch.manual_seed`` both take (a negative seed or one of 1e23 would
pass a bare int and fail every unit at run time)."""


class TaskResources(Strict):
    """The resources of a study whose units run as plain Ray tasks: CPUs per task (and as many torch threads), how
    many run at once (default: as many as the cluster has CPUs for) and how often Ray retries one whose process
    died."""

    cpus_per_task: PositiveFloat = 1
    max_concurrent: PositiveInt | None = None
    retries: Annotated[int, Field(ge=0)] = 1


class StudyBase(Strict):
    """The fields every kind of study has: its name and where its results go (each kind adds its ``resources``)."""

    name: StudyName
    results: Annotated[str, Field(max_length=4096)] | None = None  # Linux's PATH_MAX: no longer path can be opened

    @property
    def results_path(self) -> str:
        return self.results or f"results/{self.name}"


def content_id(semantic: Mapping[str, Any], *, prefix: str = "") -> str:
    """The identity of a unit of work: ``prefix`` + the first 12 hex digits of the SHA-256 of its semantic config as
    canonical JSON (keys sorted, no spaces)."""
    blob = json.dumps(semantic, sort_keys=True, separators=(",", ":"))
    return prefix + hashlib.sha256(blob.encode()).hexdigest()[:ID_LENGTH]


class Unit(Protocol):
    """A unit of work of some kind of study: what one Ray trial or task runs.

    ``unit_ids`` are the ids of the rows it writes to the table named ``TABLE``, where "finished" is read (a
    recovery batch trains several seeds, one row each). ``TABLE`` is a key of ``sweeps.tables.TABLES``, named
    rather than imported so that a worker that only computes need not load pyarrow. ``to_config`` /
    ``from_config`` carry a unit across a process boundary as JSON."""

    TABLE: str

    @property
    def unit_ids(self) -> tuple[str, ...]: ...

    def pending(self, finished: set[str]) -> Unit | None:
        """What of this unit is left to run when ``finished`` ids have rows (None: nothing)."""
        ...

    def to_config(self) -> dict[str, Any]: ...

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Unit: ...


def format_validation_error(err: ValidationError, source: str) -> str:
    """The most specific error of a pydantic ValidationError as one line: where, field, value, what is allowed.

    For a union (corpus: a name or a mapping) pydantic reports one error per alternative; the deepest one is the
    alternative the user meant, and between equals an allowed-values message beats "should be a mapping".
    """

    def specificity(e: Any) -> tuple[int, int]:
        depth = len([p for p in e["loc"] if not _is_union_tag(p)])
        return depth, e["type"] not in ("model_type", "dict_type", "model_attributes_type")

    first = max(err.errors(), key=specificity)
    loc = ".".join(_field_part(p) for p in first["loc"] if not _is_union_tag(p))
    # Our validators' messages stay under about 200 characters; the cap only cuts a user's value they quote
    msg = short(first["msg"].removeprefix("Value error, "), 300)
    if first["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see README 'Spec format')"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or first["type"] == "missing" else f" (got {short_repr(value)})"
    line = f"{source}: {loc + ': ' if loc else ''}{msg}{shown}"
    return " ".join(line.splitlines())  # one line whatever pydantic says


def _field_part(part: Any) -> str:
    text = str(part)
    return short(text if text.isprintable() and text.strip() == text and text else repr(text))


def short(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, ending in an ellipsis when cut: a value quoted in an error line may be a
    megabyte long."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BOUNDED = reprlib.Repr()
_BOUNDED.maxstring = _BOUNDED.maxother = _BOUNDED.maxlong = 80


def short_repr(value: Any, limit: int = 80) -> str:
    """The repr of `value` in at most `limit` characters, built in bounded time: reprlib renders a few items of a
    few levels, where ``repr`` would first render all of a list of 100,000 aliases to one long string."""
    return short(_BOUNDED.repr(value), limit)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts union member names (e.g. 'DatasetsCorpus', 'literal[...]') into error locations
    return isinstance(part, str) and (part[:1].isupper() or part.startswith(("literal[", "function-")))
