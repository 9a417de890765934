"""Reading a study file's YAML with limits: YAML's safe loader, but a file of at most 1 MiB, UTF-8 only, no
key given twice in a mapping, and aliases that expand to at most 10,000 values.

An alias is a reference: PyYAML builds it once, but whatever walks the result (a message that quotes a
value, ``yaml.safe_dump``, ``dataclasses.asdict``) walks it whole, so nine nested aliases of ten (the
"billion laughs") hang lrbench long after the file was read. A study file has about a hundred values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.errors import UserError

MAX_BYTES = 1 << 20
MAX_VALUES = 10_000  # values (scalars, lists, mappings) once every alias is expanded


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice (YAML 1.2 forbids it; PyYAML keeps the last silently)
    and aliases that expand past :data:`MAX_VALUES` or into themselves."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` overrides on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key (a list): the safe loader's own error says so
                break
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"the key {key!r} is given twice (first at {_where(first.start_mark)})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def compose_document(self) -> yaml.Node | None:
        node: yaml.Node | None = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def _expanded_size(root: yaml.Node) -> int:
    """The number of values ``root`` holds with every alias expanded, counted once per node (an alias
    shares its anchor's node); raises past :data:`MAX_VALUES` or on a node that contains itself."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in on_path:
            raise yaml.composer.ComposerError(None, None, "an alias that contains itself", node.start_mark)
        on_path.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        on_path.discard(id(node))
        if total > MAX_VALUES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"its aliases expand to more than {MAX_VALUES:,} values (a study has about a hundred)",
                node.start_mark,
            )
        sizes[id(node)] = total
        return total

    return size(root)


def read_yaml(path: Path) -> Any:
    """The YAML document of a study file, within the limits above; any problem is one line naming the
    file (and the line, where YAML has one)."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise UserError(f"{path}: {size:,} bytes; a study file is at most {MAX_BYTES:,} bytes (1 MiB)")
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the study file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" ({_where(mark)})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid YAML: nested too deeply") from None
