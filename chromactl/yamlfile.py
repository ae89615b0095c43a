"""YAML loading that remembers line numbers, so errors can name the file and line."""

from __future__ import annotations

from typing import Any

import yaml

from chromactl.errors import ProjectFileError


class Mapping(dict):
    """A dict from YAML that knows the line of itself and of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class Sequence(list):
    """A list from YAML that knows the line of itself and of each item."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


MAX_DEPTH = 64  # nested mappings and lists; chromactl's own files need 4


class _LineLoader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent, index):
        # PyYAML builds nodes recursively: 20,000 nested lists end in a RecursionError.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Invalid(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> Mapping:
    loader.flatten_mapping(node)
    mapping = Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise _Invalid("a mapping key must be a plain value", line)
        if key in mapping:
            raise _Invalid(f"duplicate key {key!r}", line)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> Sequence:
    sequence = Sequence(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.item_lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


class _Invalid(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message = message
        self.line = line


def load_yaml(text: str, filename: str) -> Any:
    """Parse YAML text; a syntax error becomes a ProjectFileError naming the line.

    The parser's own message is not echoed beyond its short problem text, since a
    credentials file may hold secrets on the offending line.
    """
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except _Invalid as exc:
        raise ProjectFileError(filename, exc.message, exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProjectFileError(filename, f"not valid YAML: {problem}", line) from None
    except yaml.YAMLError:
        raise ProjectFileError(filename, "not valid YAML") from None
    except ValueError:  # a value PyYAML resolves but Python refuses: a 5,000-digit number, month 13
        raise ProjectFileError(filename, "not valid YAML: a number or date out of range") from None


def require_mapping(value: Any, filename: str, what: str = "the file", line: int | None = None) -> Mapping:
    if not isinstance(value, Mapping):
        raise ProjectFileError(filename, f"{what} must be a mapping of keys to values", line)
    return value
