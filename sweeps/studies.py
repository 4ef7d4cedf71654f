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

from sweeps.base import SpecError, StudyBase, Unit, format_validation_error, short, short_repr
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
        raise SpecError(f"{source}: kind: unknown study kind (got {short_repr(key)}); allowed: {', '.join(KINDS)}")
    try:
        return kind.spec.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None


# The ready-made specs nest at most 6 levels and hold at most about 150 YAML nodes. MAX_DEPTH is far above any
# schema (a deeper spec cannot validate anyway) and keeps PyYAML's composer (3 frames a level) far below Python's
# limit of 1,000 frames. MAX_NODES leaves room for thousands of data files or grid cases, and bounds what validation
# and error messages walk: a file of that many distinct nodes costs PyYAML (pure Python, tens of µs a node) seconds
# to read, as it always did, while an alias bomb is refused after composing a few hundred.
MAX_DEPTH = 100
MAX_NODES = 100_000


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document nested deeper than MAX_DEPTH or expanding to more than MAX_NODES
    nodes while it composes the node graph, before any Python object is built.

    The limits are checked during composition because PyYAML's composer recurses once per nesting level (a deep
    document would raise RecursionError before a walk of the finished graph) and because constructing the objects of
    an alias bomb is cheap (aliases share one object) while everything that later walks them (validation, repr) is
    not. An alias counts as a copy of its anchor's node, for the depth as for the count (a chain of aliases nests
    the value it builds); the size and height of each anchored node are remembered, so checking costs one step per
    node of the file. Flow nesting (``[[[…``) is also refused in the scanner, which looks up to 1,024 characters
    ahead and pays for every bracket open there on each token (a second for ``[`` × 1,024).
    """

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self.depth = 0  # nodes above the one being composed
        self.reached = 0  # the deepest level of the node being composed so far, aliases expanded
        self.expanded = 0  # nodes so far, aliases expanded
        self.anchored: dict[yaml.Node, tuple[int, int]] = {}  # finished anchored node → (its nodes, its height)

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        if self.flow_level >= MAX_DEPTH:
            self._too_deep(self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node not in self.anchored:  # its anchor's node is still being composed: it contains this alias
                raise SpecError(
                    f"{self.source}: line {event.start_mark.line + 1}: alias *{short(event.anchor, 40)} is inside "
                    "the node it names; a spec cannot hold such a cycle"
                )
            nodes, height = self.anchored[node]
            self._count(nodes, event.start_mark)
            self._reach(self.depth + height, event.start_mark)
            return node
        level = self.depth + 1
        if level > MAX_DEPTH:
            self._too_deep(event.start_mark)
        outer, self.reached = self.reached, level
        before = self.expanded
        self._count(1, event.start_mark)
        self.depth = level
        node = super().compose_node(parent, index)
        self.depth = level - 1
        if event.anchor is not None:
            self.anchored[node] = (self.expanded - before, self.reached - level + 1)
        self.reached = max(outer, self.reached)
        return node

    def _reach(self, level: int, mark: yaml.Mark) -> None:
        if level > MAX_DEPTH:
            self._too_deep(mark)
        self.reached = max(self.reached, level)

    def _too_deep(self, mark: yaml.Mark) -> None:
        raise SpecError(
            f"{self.source}: line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels (an alias *x counting as a "
            "copy of its anchor &x), the limit of a spec: remove the extra nesting"
        )

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self.expanded += nodes
        if self.expanded > MAX_NODES:
            raise SpecError(
                f"{self.source}: line {mark.line + 1}: the spec expands to more than {MAX_NODES:,} YAML nodes (the "
                "limit of a spec, counting each alias *x as a full copy of its anchor &x): write a smaller spec or "
                "use fewer aliases"
            )


def read_yaml(text: str, source: str) -> Any:
    """The Python value of the YAML document `text`, loaded safely (no tags that run code). A document past
    MAX_DEPTH or MAX_NODES, or not valid YAML, raises SpecError with one line that starts with `source`."""
    try:
        return _SpecLoader(text, source).get_single_data()
    except SpecError:
        raise
    except (yaml.YAMLError, ValueError) as err:  # ValueError: a scalar Python refuses (2020-02-30, 5,000 digits)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SpecError(f"{source}: not valid YAML: {short(first, 200)}") from None


def load_spec(path: str | Path) -> AnySpec:
    """Read and validate a spec file (YAML, loaded safely within the limits of `read_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    return parse_spec(read_yaml(text, str(path)), str(path))


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
