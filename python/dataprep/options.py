"""The options of `tokenize`, `dedup` and `train-bpe`, as the Rust core defines them.

Each command's options are one serde struct in `rust/src/options/` (name, type, default, doc,
bounds): the single definition. This module reads their JSON schema from the extension and
builds the click flags from it, so the CLI, the Python keywords and the README table cannot
drift apart (`tests/test_options.py` checks all three).

>>> sorted(schema("tokenize")["properties"])[:3]
['bos_token', 'cls_token', 'dedup']
>>> defaults("dedup")["ngram"]
5
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import click

from dataprep import _core

F = TypeVar("F", bound=Callable[..., Any])

COMMANDS = ("tokenize", "dedup", "train-bpe")


@functools.cache
def schema(command: str) -> dict[str, Any]:
    """The JSON schema of a command's options (`properties`: type, default, description)."""
    result: dict[str, Any] = json.loads(_core.options_schema(command))
    return result


def properties(command: str) -> dict[str, dict[str, Any]]:
    """Option name -> its schema, in declaration order."""
    props: dict[str, dict[str, Any]] = schema(command)["properties"]
    return props


def defaults(command: str) -> dict[str, Any]:
    """Option name -> default value."""
    return {name: p.get("default") for name, p in properties(command).items()}


def flag(name: str, prop: Mapping[str, Any]) -> str:
    """The command-line flag of an option: `x-flag` in its schema, else `--name-with-dashes`.

    >>> flag("seq_len", {}), flag("use_bos", {"x-flag": "--bos"})
    ('--seq-len', '--bos')
    """
    explicit: str | None = prop.get("x-flag")
    return explicit or "--" + name.replace("_", "-")


def _alternatives(prop: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield prop
    for key in ("oneOf", "anyOf"):
        for sub in prop.get(key, ()):
            yield from _alternatives(sub)


def _types(prop: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for alt in _alternatives(prop):
        t = alt.get("type")
        found.update([t] if isinstance(t, str) else (t or []))
    return found - {"null"}


def choices(prop: Mapping[str, Any]) -> list[str]:
    """The values an enumerated option takes (empty when it is not one)."""
    out: list[str] = []
    for alt in _alternatives(prop):
        out += [v for v in alt.get("enum", ()) if v is not None]
        if "const" in alt:
            out.append(alt["const"])
    return out


def _click_type(prop: Mapping[str, Any]) -> Any:
    if cs := choices(prop):
        return click.Choice(cs)
    types = _types(prop)
    if "string" in types:
        return click.STRING
    if "integer" in types:
        return click.IntRange(min=prop.get("minimum"))
    if "number" in types:
        return click.FLOAT
    raise TypeError(f"no command-line type for schema {dict(prop)}")


def _param(command: str, name: str, prop: Mapping[str, Any]) -> Callable[[F], F]:
    """One click parameter for option `name` of `command`."""
    help_text = prop.get("description", "")
    if prop.get("x-argument"):
        return click.argument(name, nargs=-1, required=True, type=click.Path())
    default = prop.get("x-cli-default", prop.get("default"))
    common: dict[str, Any] = {
        "help": help_text,
        "default": default,
        "show_default": default not in (None, [], ""),
        "required": bool(prop.get("x-required")),
    }
    types = _types(prop)
    opt = flag(name, prop)
    if types == {"boolean"}:
        return click.option(f"{opt}/--no-{opt[2:]}", name, **common)
    if types == {"array"} and "prefixItems" in prop:
        items = tuple(_click_type(p) for p in prop["prefixItems"])
        return click.option(opt, name, type=items, metavar=prop.get("x-metavar"), **common)
    if types == {"array"}:
        common["show_default"] = False
        return click.option(opt, name, type=_click_type(prop["items"]), multiple=True, **common)
    return click.option(opt, name, type=_click_type(prop), **common)


def click_options(command: str) -> Callable[[F], F]:
    """Adds one click parameter per option of `command`, in the schema's order."""

    def decorate(f: F) -> F:
        for name, prop in reversed(list(properties(command).items())):
            f = _param(command, name, prop)(f)
        return f

    return decorate


def given(command: str, ctx: click.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """The options the user set on the command line (plus CLI-only defaults such as dedup's
    `--out deduped`): what the core must see, so that it can refuse an option that does not
    apply instead of ignoring it."""
    out: dict[str, Any] = {}
    for name, prop in properties(command).items():
        source = ctx.get_parameter_source(name)
        if source is not click.core.ParameterSource.DEFAULT or "x-cli-default" in prop:
            out[name] = values[name]
    return plain(out)


def plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as the core takes them: paths as strings, tuples as lists.

    >>> import pathlib
    >>> plain({"inputs": (pathlib.Path("a"),), "bands": (9, 13), "out": pathlib.Path("o")})
    {'inputs': ['a'], 'bands': [9, 13], 'out': 'o'}
    """

    def conv(v: Any) -> Any:
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        return v

    return {k: conv(v) for k, v in options.items()}


def markdown_table(command: str) -> str:
    """The README's table of a command's options, from the schema."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for name, prop in properties(command).items():
        if prop.get("x-argument"):
            continue
        default = prop.get("x-cli-default", prop.get("default"))
        shown = (
            ""
            if default in (None, [], "")
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        cs = choices(prop)
        meaning = prop.get("description", "").replace("|", "\\|")
        if cs:
            meaning += " (" + ", ".join(f"`{c}`" for c in cs) + ")"
        opt = flag(name, prop)
        if _types(prop) == {"boolean"}:
            opt = f"{opt}/--no-{opt[2:]}"
        elif metavar := prop.get("x-metavar"):
            opt = f"{opt} {metavar}"
        rows.append(f"| `{opt}` | {shown} | {meaning} |")
    return "\n".join(rows)


def readme_with_tables(text: str) -> str:
    """`text` (the README) with each `<!-- options: COMMAND -->` block replaced by the table of
    that command's options, so the README's rows are generated, never copied by hand."""

    def table(m: re.Match[str]) -> str:
        return f"{m.group(1)}\n{markdown_table(m.group(2))}\n{m.group(3)}"

    return re.sub(
        r"(<!-- options: ([a-z-]+) -->)\n.*?\n(<!-- /options -->)", table, text, flags=re.S
    )


def rewrite_readme(path: str | os.PathLike[str]) -> bool:
    """Regenerates the option tables of the README at `path` (`make docs`); True if it changed."""
    with open(path, encoding="utf-8") as f:
        old = f.read()
    new = readme_with_tables(old)
    if new != old:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != old
