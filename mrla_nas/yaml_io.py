"""Reading YAML the user gives (search spaces, architecture configs): safe, strict and bounded.

Every file ends either as plain Python data or as one :class:`~mrla_nas.arch.ConfigError` line:

- YAML's safe loader: no tag can run code or build objects;
- at most ``MAX_BYTES`` are read, and only from a regular file (a FIFO or ``/dev/zero`` would never
  end), decoded as UTF-8;
- a key given twice in one mapping is an error (PyYAML would silently keep the last value);
- nesting deeper than ``MAX_DEPTH``, aliases that expand beyond ``MAX_VALUES`` values ("billion
  laughs") and a value that contains itself are refused before anything walks the data.

>>> load_yaml_text("a: 1\\nb: [x, y]\\n")
{'a': 1, 'b': ['x', 'y']}
>>> load_yaml_text("a: 1\\na: 2\\n")
Traceback (most recent call last):
...
mrla_nas.errors.ConfigError: yaml: line 2: key 'a' given twice in one mapping (line 1 and line 2); keep one
"""
from __future__ import annotations

import os
import stat
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import ConfigError, show

MAX_BYTES = 1 << 20      # a search space is a few kB; 1 MiB leaves room and bounds the parser's work
MAX_DEPTH = 32           # the deepest legitimate value is 5 levels (stages -> list -> mapping -> choices)
MAX_VALUES = 100_000     # scalars + collections after alias expansion


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with a nesting bound while composing and duplicate keys refused."""

    def __init__(self, stream, source: str):
        super().__init__(stream)
        self.source = source
        self._depth = 0

    def compose_node(self, parent, index):
        # the composer recurses once per level: bound it before Python's recursion limit does
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.source}: line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if not isinstance(key_node.value, str) or key_node.tag != "tag:yaml.org,2002:str":
                    continue  # non-string keys are reported by the validators as unknown keys
                key, line = key_node.value, key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{self.source}: line {line}: key {show(key)} given twice in one mapping "
                                      f"(line {seen[key]} and line {line}); keep one")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Node, source: str) -> None:
    """Refuse a graph of nodes that is cyclic, too deep or too large once aliases are expanded
    (iterative: the graph may be deep; sizes memoised per node, so this is linear in the file)."""
    size, depth = {}, {}
    stack = [(root, False)]
    on_path = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:
                raise ConfigError(f"{source}: line {node.start_mark.line + 1}: expands to more than {MAX_VALUES:,} "
                                  "values through aliases (*name); write the values out")
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"{source}: line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels "
                                  "deep through aliases (*name)")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"{source}: line {node.start_mark.line + 1}: a value that contains itself through "
                              "an alias (*name); YAML data here must be a tree")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def load_yaml_text(text: str, source: str = "yaml") -> Any:
    """Parse ``text`` (already bounded in size) with the strict safe loader; errors are ConfigError."""
    loader = None
    try:
        loader = _StrictLoader(text, source)  # its reader already rejects unprintable characters
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML ({where}{what})") from None
    except RecursionError:  # a parser stage without our depth bound; never a traceback
        raise ConfigError(f"{source}: nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text_file(path, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` bytes, or a ConfigError saying why not."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path!r}: does not exist") from None
    except OSError as e:
        raise ConfigError(f"{what} {path!r}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path!r}: is a directory; give a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{what} {path!r}: is not a regular file (a device, pipe or socket); give a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"{what} {path!r}: cannot be read ({e.strerror})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} {path!r}: larger than {max_bytes:,} bytes; a YAML config is a few kB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path!r}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def load_yaml_file(path, what: str = "file") -> Any:
    """:func:`read_text_file` then :func:`load_yaml_text`."""
    return load_yaml_text(read_text_file(path, what), source=os.fspath(path))
