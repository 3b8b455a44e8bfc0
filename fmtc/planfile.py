"""Reading plan files: the plan's error and a YAML loader that refuses what no plan can mean.

:func:`read_yaml` parses a plan file with :class:`PlanLoader` (a :class:`yaml.SafeLoader`)
and turns every failure — a damaged, huge, non-UTF-8 or alias-bombed file, a duplicate key —
into one :class:`PlanError` line naming ``file:line:column``. :mod:`fmtc.plan` builds the typed
plan from what it returns.
"""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

from fmtc.errors import UsageError, clip
from fmtc.storage import not_utf8

MAX_PLAN_BYTES = 1 << 20
"""Largest plan file read (1 MiB; a plan is a few KB): a bigger file is not a plan."""

MAX_YAML_VALUES = 100_000
"""Most values (mappings, lists, scalars) a plan document may hold once its aliases are
expanded; the built-in profiles hold about 600. Bounds "billion laughs" documents, whose
few KB of nested aliases expand to billions of values."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of a plan document (aliases expanded); the built-in profiles reach 8."""


class PlanError(UsageError):
    """A plan file holds an unknown key or a value of the wrong type or range.

    The message is one line of at most :data:`fmtc.errors.MESSAGE_BYTES` bytes.
    """

    def __init__(self, message: str) -> None:
        super().__init__(clip(message))


_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlevel = 60, 60, 2
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxset = _SHOW.maxdict = 5


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, shortened with ``...`` / ``…`` past ``limit``."""
    return clip(_SHOW.repr(value), limit)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a plan file with :class:`PlanLoader`.

    Raises :class:`PlanError` naming ``file:line:column`` for a damaged file, a duplicate
    key or aliases that expand too far, and naming the file for one that is not UTF-8, too
    large (over :data:`MAX_PLAN_BYTES`) or nested too deeply.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_BYTES:
            raise PlanError(f"{path}: {size / 2**20:.1f} MiB is too large for a plan file (at "
                            f"most {MAX_PLAN_BYTES // 2**20} MiB; a plan is a few KB): check "
                            "that this is the plan")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise PlanError(f"{path}: {not_utf8(error)}") from None
    except OSError as error:
        raise PlanError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return yaml.load(text, Loader=PlanLoader)  # a SafeLoader
    except RefusedYAML as error:
        raise PlanError(f"{_position(path, error.problem_mark)}: {error.problem}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "invalid YAML"
        hint = ("; indent with spaces, not tabs" if "'\\t'" in problem
                else "; check the indentation and the quoting around this position")
        raise PlanError(f"{_position(path, mark)}: YAML syntax error: {problem}{hint}") from None
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: YAML error: {error}") from None
    except RecursionError:
        raise PlanError(f"{path}: values are nested too deeply (over {MAX_YAML_DEPTH} levels; "
                        "a plan nests about 8): check the brackets") from None


def _position(path: Path, mark: Any) -> str:
    """``file:line:column`` of a YAML mark (1-based), or the file alone without one."""
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)


class RefusedYAML(yaml.MarkedYAMLError):
    """Well-formed YAML that no plan can be: a duplicate key, aliases expanding too far."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class PlanLoader(yaml.SafeLoader):
    """The YAML loader of plan files: :class:`yaml.SafeLoader` refusing what a plan cannot mean.

    Before any Python object is built, the composed node graph is walked once (time linear
    in the file, whatever its aliases expand to) and :class:`RefusedYAML` is raised for

    - a mapping with a key twice (PyYAML keeps the last value without a word);
    - aliases that expand the document to more than :data:`MAX_YAML_VALUES` values (a
      "billion laughs" document) or nest it deeper than :data:`MAX_YAML_DEPTH` levels;
    - an alias inside the node it names (a recursive structure).

    Anchors and aliases within these bounds work as usual (the built-in profiles share one
    ``architecture`` with ``&small-brainlm`` / ``*small-brainlm``), and so do merge keys
    (``<<: *defaults``), whose keys a mapping may override.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        """Check the node graph of the document, then build it."""
        _check_node_graph(node, self)
        return super().construct_document(node)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_node_graph(root: yaml.Node, loader: PlanLoader) -> None:
    """Raise :class:`RefusedYAML` for duplicate keys, alias bombs and recursive aliases.

    An iterative post-order walk: every node is visited once however many aliases name it,
    and its expanded size (values) and height are computed from its children's.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels), aliases expanded
    open_nodes: set[int] = set()  # the nodes on the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            children = _children(node)
            values = 1 + sum(measured[id(c)][0] for c in children)
            levels = 1 + max((measured[id(c)][1] for c in children), default=0)
            if values > MAX_YAML_VALUES:
                raise RefusedYAML(
                    f"aliases expand the plan to more than {MAX_YAML_VALUES:,} values here "
                    "(nested aliases of aliases, a 'billion laughs' document); a plan holds a "
                    "few hundred: write the values out, or nest fewer aliases", node.start_mark)
            if levels > MAX_YAML_DEPTH:
                raise RefusedYAML(f"values are nested more than {MAX_YAML_DEPTH} levels deep "
                                  "(aliases expanded; a plan nests about 8): check the aliases "
                                  "and brackets", node.start_mark)
            measured[key] = (values, levels)
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise RefusedYAML("an alias names a node that contains it (a recursive "
                              "structure), which no plan value can be: remove the alias",
                              node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _check_duplicate_keys(node, loader)
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)


def _check_duplicate_keys(node: yaml.MappingNode, loader: PlanLoader) -> None:
    """Raise :class:`RefusedYAML` when a mapping spells one key twice (merge keys aside)."""
    first: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # merged keys may be overridden; complex keys fail when built
        key = loader.construct_object(key_node)
        try:
            earlier = first.setdefault(key, key_node.start_mark)
        except TypeError:  # pragma: no cover - scalars are hashable
            continue
        if earlier is not key_node.start_mark:
            raise RefusedYAML(
                f"duplicate key {show(key, 60)} (first at line {earlier.line + 1}); YAML "
                "would keep only the last value, silently: remove one, or merge them",
                key_node.start_mark)

