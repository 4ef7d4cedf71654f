"""The limits of a spec file: nesting depth and alias expansion are refused in one line, quickly and in little memory,
wherever a spec is read (load_spec, the CLI, a results directory's spec.yaml), and a huge value never fills an error.

The property tests at the end build YAML text directly (hypothesis's own recursive strategies stay shallow and have no
anchors): nesting of any depth up to 100,000 levels in every style, alias bombs whose expanded size is known exactly,
and random documents of anchors, aliases and merge keys.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.results import ResultsDir, ResultsError
from sweeps.base import SpecError
from sweeps.errors import InputError
from sweeps.studies import MAX_DEPTH, MAX_NODES, builtin_spec_path, load_spec, read_yaml

DEPTH_ERROR = f"nested deeper than {MAX_DEPTH} levels"
NODES_ERROR = f"expands to more than {MAX_NODES:,} YAML nodes"


def alias_bomb() -> str:
    """The bomb of issue 16: nine anchors, each a list of nine aliases of the one before (9⁹ "lol"s expanded)."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, anchor in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{anchor}: &{anchor} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join([*lines, "name: *i", ""])


DEEP = {
    "flow-3000": "name: " + "[" * 3000 + "]" * 3000 + "\n",
    "flow-100000": "name: " + "{a: " * 100_000 + "x" + "}" * 100_000 + "\n",
    "block-3000": "name:\n" + "- " * 3000 + "x\n",
    "block-mapping-3000": "".join(" " * level + "a:\n" for level in range(3000)),
}


def expanded(value: Any) -> int:
    """YAML nodes of `value` with every shared object counted once per place it appears (a key is one node)."""
    if isinstance(value, dict):
        return 1 + sum(1 + expanded(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(expanded(v) for v in value)
    return 1


def depth(value: Any) -> int:
    """Levels of `value`, itself the first (a key sits one level below its mapping, as deep as a scalar value)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 1


def refused(path: Path) -> tuple[str, float]:
    """The error line of loading the spec at `path`, and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_spec(path)
    return str(err.value), time.perf_counter() - start


def refused_in_little_memory(path: Path) -> tuple[str, float]:
    """`refused`, checking that loading allocated at most 16 MiB at its peak (tracemalloc slows PyYAML's scanner
    twentyfold, so only small files are measured)."""
    tracemalloc.start()
    try:
        message, seconds = refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20
    return message, seconds


@pytest.mark.parametrize("style", list(DEEP))
def test_a_deeply_nested_file_is_one_line_naming_the_depth_limit(tmp_path: Path, style: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(DEEP[style])
    message, seconds = refused(path)
    assert message.startswith(f"{path}: line ") and DEPTH_ERROR in message and "\n" not in message
    assert seconds < 2  # before the limit: a RecursionError, after 2 s


def test_the_depth_limit_is_exactly_max_depth() -> None:
    assert depth(read_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f")) == MAX_DEPTH
    assert depth(read_yaml("- " * (MAX_DEPTH - 1) + "x", "f")) == MAX_DEPTH
    for text in ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "- " * MAX_DEPTH + "x"):
        with pytest.raises(SpecError, match=DEPTH_ERROR):
            read_yaml(text, "f")


def test_the_alias_bomb_is_one_line_naming_the_expansion_limit_in_little_time_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    message, seconds = refused_in_little_memory(path)
    assert message.startswith(f"{path}: line ") and NODES_ERROR in message and "\n" not in message
    assert seconds < 2  # before the limit: still running after 20 s, at 1 GB and growing


def bounded_aliases(extra: int) -> str:
    """A document of exactly MAX_NODES + `extra` nodes, most of them behind aliases: the root list holds a 10-node
    anchor a, a 91-node anchor b of nine *a, 1,097 *b (99,827 nodes) and 71 + `extra` scalars."""
    items = ["&a [x, x, x, x, x, x, x, x, x]", "&b [" + ", ".join(["*a"] * 9) + "]"]
    items += ["*b"] * 1097 + ["y"] * (71 + extra)
    return "[" + ", ".join(items) + "]"


def test_the_expansion_limit_counts_each_alias_as_a_copy_of_its_anchor() -> None:
    value = read_yaml(bounded_aliases(0), "f")
    assert expanded(value) == MAX_NODES
    with pytest.raises(SpecError, match=NODES_ERROR):
        read_yaml(bounded_aliases(1), "f")


def merge_chain(links: int) -> str:
    """Mapping m0 and `links` more, each merging the one before (``<<: *prev``) and adding a key."""
    return "m0: &m0 {k0: 0}\n" + "".join(f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}\n" for i in range(1, links + 1))


def test_a_chain_of_merge_keys_is_refused_by_the_depth_limit() -> None:
    """PyYAML flattens a merge by recursing into the merged mapping, so a chain nests one level a link: link 98
    (on line 99) would reach level 101, where 3,000 links would have recursed 3,000 deep."""
    assert read_yaml(merge_chain(97), "f")["m97"] == {f"k{i}": i for i in range(98)}
    start = time.perf_counter()
    with pytest.raises(SpecError, match=f"^f: line 99: {DEPTH_ERROR}"):
        read_yaml(merge_chain(2999), "f")
    assert time.perf_counter() - start < 2


def test_a_chain_of_aliases_nests_its_value_and_is_held_to_the_depth_limit() -> None:
    def chain(links: int) -> str:
        return "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, links + 1))

    assert depth(read_yaml(chain(97), "f")["a97"]) == MAX_DEPTH - 1  # below the root mapping: 98 lists and x
    with pytest.raises(SpecError, match=f"^f: line 99: {DEPTH_ERROR}"):
        read_yaml(chain(98), "f")


@pytest.mark.parametrize("text", ["a: &a [1, *a]", "a: &a {b: {c: *a}}"])
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match=r"^f: line 1: alias \*a is inside the node it names"):
        read_yaml(text, "f")


def test_anchors_and_aliases_within_the_limits_load_as_the_written_out_spec(tmp_path: Path) -> None:
    ready = builtin_spec_path("recovery-tanh")
    written_out = ready.read_text()
    target = "target: {family: conv_tanh, d: 5, kernel: [0.6, 0.8, 1.0]}"
    assert written_out.count(target) == 2
    first = written_out.index(target)
    aliased = (
        written_out[:first]
        + target.replace("target: ", "target: &target ")
        + written_out[first + len(target) :].replace(target, "target: *target")
    )
    path = tmp_path / "aliased.yaml"
    path.write_text(aliased)
    assert load_spec(path) == load_spec(ready)


def test_a_merge_key_within_the_limits_is_read_as_yaml_defines_it() -> None:
    assert read_yaml("base: &b {lr: 0.1, steps: 5}\nrun: {<<: *b, steps: 9}", "f")["run"] == {"lr": 0.1, "steps": 9}


SMOKE = builtin_spec_path("smoke").read_text()
LONG = 100_000  # characters: a thousand times what an error line shows of a value, and quick for PyYAML to scan
SIZES = 'sizes: ["1x32", "2x32"]'
HUGE = {  # the smoke study with one line changed to hold a huge value, and what the error line says
    # a name or results location that would pass as a string, and be quoted in full by every later error
    "name": ("name: smoke", "name: " + "n" * LONG, "name: String should have at most 255 characters"),
    "results": ("name: smoke", "name: smoke\nresults: " + "/r" * LONG, "results: String should have at most 4096"),
    "unknown-key": ("name: smoke", "name: smoke\n? " + "k" * LONG + "\n: 1", "unknown key"),
    "kind": ("name: smoke", "kind: " + "q" * LONG, "kind: unknown study kind"),
    "quoted-by-a-validator": (SIZES, f"sizes: ['1x{'9' * LONG}y']", "model.sizes: size '1x999"),
    "undefined-alias": ("name: smoke", "name: *" + "z" * LONG, "not valid YAML: found undefined alias"),
    "tag": ("name: smoke", "name: !" + "t" * LONG + " x", "not valid YAML: could not determine a constructor"),
}


@pytest.mark.parametrize("case", list(HUGE))
def test_an_error_line_never_renders_a_huge_value_in_full(tmp_path: Path, case: str) -> None:
    line, replacement, expected = HUGE[case]
    assert SMOKE.count(line) == 1
    path = tmp_path / "huge.yaml"
    path.write_text(SMOKE.replace(line, replacement))
    message, _ = refused(path)
    assert expected in message and "\n" not in message
    assert len(message) < len(str(path)) + 500  # field, a message cut to 300 characters, a value cut to 80


def test_a_value_copied_by_aliases_is_not_rendered_in_full_before_it_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "copies.yaml"
    # 97,020 copies of a 1,000-character string: their repr would be 97 MB
    copies = "name: [&a [&s '" + "s" * 1000 + "'" + ", *s" * 98 + "]" + ", *a" * 979 + "]"
    path.write_text(SMOKE.replace("name: smoke", copies))
    message, _ = refused_in_little_memory(path)
    assert "name: Input should be a valid string (got [['sss" in message and len(message) < len(str(path)) + 500


@pytest.mark.parametrize("content", [alias_bomb(), DEEP["flow-3000"]], ids=["bomb", "deep"])
def test_the_cli_refuses_a_bomb_or_a_deep_file_in_one_line_with_exit_code_2(tmp_path: Path, content: str) -> None:
    (tmp_path / "spec.yaml").write_text(content)
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", "spec.yaml", "--results", str(results)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,  # a regression fails here instead of hanging the suite
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scalesweep: error: spec.yaml: line "), done.stderr
    assert DEPTH_ERROR in lines[0] or NODES_ERROR in lines[0]
    assert not results.exists()


@pytest.mark.parametrize("content", [alias_bomb(), DEEP["flow-3000"]], ids=["bomb", "deep"])
def test_a_results_directory_whose_spec_is_a_bomb_or_too_deep_is_not_this_studys(tmp_path: Path, content: str) -> None:
    (tmp_path / "spec.yaml").write_text(content)
    start = time.perf_counter()
    with pytest.raises(ResultsError, match="no results of study 'smoke'"):
        ResultsDir.at(str(tmp_path)).check_belongs_to("smoke")
    assert time.perf_counter() - start < 2


# ------------------------------------------------------------------------------------------------ property tests

BASE: dict[str, Any] = yaml.safe_load(SMOKE)
KEYS = st.sampled_from([*BASE, "extra"])  # the part of the smoke study that a generated value replaces (or adds)


def with_value(key: str, value_text: str) -> tuple[str, dict[str, Any]]:
    """The smoke study with `key` holding the YAML `value_text` (a line after ``key:``), and the rest of it."""
    rest = {k: v for k, v in BASE.items() if k != key}
    return yaml.safe_dump(rest, sort_keys=False) + f"{key}:{value_text}\n", rest


def answer(text: str) -> tuple[str | None, float]:
    """What load_spec makes of a file holding `text` (None: a valid spec, or the error line), and how long it took."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text)
        start = time.perf_counter()
        try:
            load_spec(path)
            error = None
        except InputError as err:  # anything else is a bug and fails the test
            error = str(err)
            assert error.startswith(f"{path}: ") and "\n" not in error
            assert len(error) < len(str(path)) + 500
        return error, time.perf_counter() - start


@st.composite
def nested(draw: st.DrawFn) -> tuple[str, int]:
    """The smoke study with one part nested `levels` deep: block mappings, then block sequences (``- - -``), then
    flow collections (``[`` and ``{a:`` in a drawn pattern) around a scalar; and the level of its deepest node."""
    key = draw(KEYS)
    levels = draw(
        st.integers(0, 2 * MAX_DEPTH)
        | st.sampled_from([MAX_DEPTH - 3, MAX_DEPTH - 2, MAX_DEPTH - 1, 3_000, 100_000])
        | st.integers(0, 5_000)
    )
    block_maps = draw(st.integers(0, min(levels, 40)))
    block_seqs = draw(st.integers(0, levels - block_maps))
    pattern = draw(st.lists(st.sampled_from(["[", "{a: "]), min_size=1, max_size=3))
    openers = [pattern[i % len(pattern)] for i in range(levels - block_maps - block_seqs)]
    closers = ["]" if opener == "[" else "}" for opener in reversed(openers)]
    value = "".join(f"\n{'  ' * level}k:" for level in range(1, block_maps + 1))
    value += f"\n{'  ' * (block_maps + 1)}{'- ' * block_seqs}{''.join(openers)}x{''.join(closers)}"
    text, rest = with_value(key, value)
    return text, max(1 + levels + 1, depth(rest))  # the root, the levels, the scalar


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested())
def test_nesting_of_any_depth_and_style_is_refused_exactly_past_the_limit(case: tuple[str, int]) -> None:
    text, deepest = case
    error, seconds = answer(text)
    assert (error is not None and DEPTH_ERROR in error) == (deepest > MAX_DEPTH), error
    assert seconds < 2


@st.composite
def aliased(draw: st.DrawFn) -> tuple[str, int]:
    """The smoke study with one part a list of anchors, each a list of `width` aliases of the one before (the first:
    of scalars), and `uses` more aliases of the last: an alias bomb once width^anchors is large; and its expanded
    number of nodes."""
    key, width, anchors, uses = draw(KEYS), draw(st.integers(1, 12)), draw(st.integers(1, 9)), draw(st.integers(0, 3))
    items = [f"&a0 [{', '.join(['x'] * width)}]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, anchors)]
    items += [f"*a{anchors - 1}"] * uses
    sizes = [1 + width]
    for _ in range(1, anchors):
        sizes.append(1 + width * sizes[-1])
    text, rest = with_value(key, f" [{', '.join(items)}]")
    return text, expanded(rest) + 1 + 1 + sum(sizes) + uses * sizes[-1]  # the rest, the key, the list, its items


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aliased())
def test_aliases_are_refused_exactly_when_their_expansion_passes_the_limit(case: tuple[str, int]) -> None:
    text, nodes = case
    error, seconds = answer(text)
    assert (error is not None and NODES_ERROR in error) == (nodes > MAX_NODES), error
    assert seconds < 2


NAMES = st.sampled_from(["a", "b", "c"])


def collections(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Flow sequences and mappings (keys k, l and the merge key ``<<``) of `inner`, some of them anchored."""
    plain = st.lists(inner, max_size=4).map(lambda items: f"[{', '.join(items)}]") | st.lists(
        st.tuples(st.sampled_from(["k", "l", "<<"]), inner), max_size=3
    ).map(lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}")
    return plain | st.tuples(NAMES, plain).map(lambda anchored: f"&{anchored[0]} {anchored[1]}")


TREES = st.recursive(
    st.sampled_from(["x", "1", "-2.5", "null", "true", "''", "2020-02-30"]) | NAMES.map(lambda name: f"*{name}"),
    collections,
    max_leaves=16,
)


@st.composite
def random_documents(draw: st.DrawFn) -> str:
    """A random flow document of anchors, aliases (defined, undefined or cyclic) and merge keys, copied by up to five
    anchor-and-aliases wrappers (``[&w0 [T], *w0, *w0, …]``, a bomb when many) and nested up to 3,000 deep."""
    text, copies = draw(TREES), draw(st.integers(1, 40))
    for i in range(draw(st.integers(0, 5))):
        text = f"[&w{i} [{text}]{f', *w{i}' * copies}]"
    nest = draw(st.sampled_from([0, 1, 2, 10, MAX_DEPTH - 5, 3_000]))
    return "[" * nest + text + "]" * nest


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_documents(), KEYS)
def test_any_use_of_anchors_and_aliases_is_a_spec_or_a_one_line_error_quickly(document: str, key: str) -> None:
    _, seconds = answer(with_value(key, f" {document}")[0])
    assert seconds < 2
    try:
        value = read_yaml(document, "f")
    except SpecError:
        return
    assert expanded(value) <= MAX_NODES and depth(value) <= MAX_DEPTH  # what the limits promise of a loaded value
