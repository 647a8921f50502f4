"""vLLM's serve arguments as a table, read once per installed vLLM and cached
(engine/arg_table_cache.py), so that `gthread validate` judges extraArgs without importing vLLM:
engine/arg_table_check.py rebuilds the parser from it. The one module that reads vLLM's parser for it.

What goes in is what can be reproduced exactly: each action of the parser build_args uses (its
option strings, nargs, const, choices, kind, and its value type as a tag for the types vLLM builds
from str, int, float, json.loads and its own small helpers; anything else is "opaque", and an argv
that uses it gets no verdict from the table), the registered tool-call and reasoning parsers, the
platform (which flags gthreadd adds), and vLLM's serve checks (`validate_parsed_serve_args`) as a
graph of what they read. Each type tag is tried against vLLM's own function on probe values, and
the rebuilt parser against vLLM's on the base argv; what disagrees is left to vLLM.

`python -m engine.arg_table` writes the table to the cache and prints where.
"""

import argparse
import importlib
import json
from argparse import Action, ArgumentParser, Namespace
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from engine.arg_table_cache import installed_vllm, write
from engine.arg_table_check import (
    ACCUMULATING, FORMAT, ArgTableCheck, CannotJudge, flexible_argv, json_key, plain, value_type,
)
from engine.args import REGISTERED_PARSERS, serve_parser
from engine.compat import current_platform, validate_parsed_serve_args
from engine.config import EngineConfig
from engine.parser_names import PARSER_FLAGS
from engine.serve_argv import serve_argv

KINDS = {
    argparse._StoreAction: "store", argparse._StoreConstAction: "store_const",
    argparse._StoreTrueAction: "store_true", argparse._StoreFalseAction: "store_false",
    argparse._AppendAction: "append", argparse._AppendConstAction: "append_const",
    argparse._CountAction: "count", argparse._ExtendAction: "extend",
    argparse.BooleanOptionalAction: "boolean_optional",
}

# Strings a type tag's function must treat as vLLM's does: values, errors and messages.
PROBES = ("", " ", "None", "none", "0", "1", "-1", "+2", " 7 ", "1_000", "1.5", "-0.5", "1e3", "nan", "inf",
          "0x10", "\u0661\u0662", "auto", "AUTO", "lots", "2k", "2K", "1.5k", "1.5K", "25.6m", "3g", "1t", "1T",
          "2KB", "true", "null", "[1]", '"s"', "{}", '{"a": 1}', ' {"a": [1, 2]}\n', "{bad", "{1}", "\x1c{}")


def _type_tags() -> Callable[[Any], str]:
    """A function from a vLLM value type to its tag. vLLM's helpers are looked up by name in the
    modules that define them (vLLM 0.24 to 0.33); one that a release lacks is never matched."""
    modules = [importlib.import_module(name) for name in ("vllm.utils.argparse_utils", "vllm.engine.arg_utils")]
    named: list[tuple[Any, str]] = [(str, "str"), (int, "int"), (float, "float"), (json.loads, "json")] + [
        (f, name) for module in modules for name in ("human_readable_int", "human_readable_int_or_auto",
                                                     "union_dict_and_str")
        if callable(f := getattr(module, name, None))]
    closures = {make(str).__code__: wrapper for module in modules
                for wrapper, name in (("optional", "optional_type"), ("parse", "parse_type"))
                if callable(make := getattr(module, name, None))}

    def tag(value_type: Any) -> str:
        if value_type is None:
            return "none"
        if name := next((name for f, name in named if f is value_type), None):
            return name
        code = getattr(value_type, "__code__", None)
        if code in closures and "return_type" in code.co_freevars:
            inner = value_type.__closure__[code.co_freevars.index("return_type")].cell_contents
            return f"{closures[code]}:{tag(inner)}"
        return "opaque"
    return tag


def _outcome(function: Callable[[str], Any], probe: str) -> tuple:
    try:
        value = function(probe)
    except CannotJudge:
        return ("cannot judge",)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("value", type(value), repr(value))


def _reproduced(vllm_type: Callable[[str], Any], tag: str) -> bool:
    """Whether the tag's function gives what vLLM's does for every probe (or no verdict where
    vLLM's raises a message the table cannot repeat)."""
    ours = value_type(tag)
    for probe in PROBES:
        want, got = _outcome(vllm_type, probe), _outcome(ours, probe)
        if got != want and not (got == ("cannot judge",) and want[0] == "error"):
            return False
    return True


def _kind(action: Action) -> str:
    """The argparse action it is, or "opaque": vLLM's own Action classes, and subclasses that act
    differently from their base."""
    for cls in type(action).__mro__:
        if cls in KINDS:
            return KINDS[cls] if type(action).__call__ is cls.__call__ else "opaque"
    return "opaque"


def _action(action: Action, tag: str, grouped: bool) -> dict:
    kind, positional = _kind(action), not action.option_strings
    kept_default = kind in ACCUMULATING or positional  # the rest are filled in from "defaults"
    scalar_choices = action.choices is None or (type(action.choices) in (list, tuple) and all(
        plain(c) and type(c) not in (list, dict) for c in action.choices))
    if (grouped or not scalar_choices or not plain(action.nargs) or not plain(action.const)
            or (kept_default and not plain(action.default))
            or (positional and type(action.metavar) not in (str, type(None)))):
        kind = "opaque"
    judged = kind != "opaque"
    return {"option_strings": list(action.option_strings), "dest": action.dest, "kind": kind,
            "nargs": action.nargs, "const": action.const if judged else None,
            "default": action.default if judged and kept_default else None, "type": tag if judged else "none",
            "choices": None if action.choices is None or not judged else list(action.choices),
            "required": action.required, "metavar": action.metavar if positional else None}


def _actions(parser: ArgumentParser) -> list[dict]:
    """Every action, in the parser's order (which orders argparse's "could match" lists)."""
    tag_of = _type_tags()
    grouped = {id(a) for group in parser._mutually_exclusive_groups for a in group._group_actions}
    tags: dict[str, bool] = {}
    records = []
    for action in parser._actions:
        tag = tag_of(action.type)
        if tag not in tags:
            tags[tag] = tag == "none" or ("opaque" not in tag and _reproduced(action.type, tag))
        records.append(_action(action, tag if tags[tag] else "opaque", id(action) in grouped))
    return records


def _domains(parser: ArgumentParser, parsers: dict[str, list[str]]) -> dict[str, list]:
    """The values the parser can give a dest where they are few (flags, choices, parser names):
    the serve checks are run with each of them."""
    domains: dict[str, list] = defaultdict(list)
    for action in parser._actions:
        kind = _kind(action)
        if kind in ("store_true", "store_false", "store_const"):
            domains[action.dest] += [action.const, action.default]
        elif kind == "boolean_optional":
            domains[action.dest] += [True, False, action.default]
        elif kind == "store" and action.choices is not None and action.nargs in (None, "?"):
            domains[action.dest] += [*action.choices, action.default, action.const]
    for flag, (dest, _) in PARSER_FLAGS.items():
        domains[dest] += parsers[flag]
    return domains


def _run_serve_checks(values: dict[str, Any]) -> tuple[list[tuple[str, Any]], str | None]:
    """validate_parsed_serve_args on these values: what it read, in order, before writing it,
    and its verdict ("", build_args's message, or None for an exception build_args lets through).
    A look at the whole namespace ends the reads with no verdict."""
    reads: list[tuple[str, Any]] = []
    written: set[str] = set()
    whole: list[bool] = []

    class Recording(Namespace):
        def __getattribute__(self, name: str) -> Any:
            if name == "__dict__":
                whole.append(True)
            value = super().__getattribute__(name)
            if name in values and name not in written and not whole:
                reads.append((name, value))
            return value

        def __setattr__(self, name: str, value: Any) -> None:
            written.add(name)
            super().__setattr__(name, value)

    args = Recording()
    object.__getattribute__(args, "__dict__").update(values)
    try:
        validate_parsed_serve_args(args)
        verdict: str | None = ""
    except (TypeError, ValueError) as exc:
        verdict = str(exc)
    except Exception:
        verdict = None
    return reads, None if whole else verdict


def _serve_checks(base: dict[str, Any], domains: dict[str, list]) -> dict:
    """validate_parsed_serve_args as a graph. It is a function of the values it reads: run on the
    base argv's values, then again with each other value of a dest it read (where the parser can
    give only a few), the values read so far lead to its next read and at last to its verdict, for
    any argv. Identical subgraphs are stored once (the tool-call parsers all lead to the same)."""
    nodes: list[dict] = []
    index: dict[str, int] = {}

    def node(content: dict) -> int:
        key = json.dumps(content, sort_keys=True)
        if key not in index:
            index[key] = len(nodes)
            nodes.append(content)
        return index[key]

    def graph(forced: dict[str, Any], reads: list[tuple[str, Any]], verdict: str | None, at: int) -> int:
        if at == len(reads):
            return node({"verdict": verdict})
        dest, value = reads[at]
        if (key := json_key(value)) is None:
            return node({"verdict": None})
        following = {key: graph(forced, reads, verdict, at + 1)}
        if all(dest != d for d, _ in reads[:at]):
            for other in domains.get(dest, ()):
                if (other_key := json_key(other)) is not None and other_key not in following:
                    changed = forced | {dest: other}
                    following[other_key] = graph(changed, *_run_serve_checks(base | changed), at + 1)
        return node({"read": dest, "next": following})

    root = graph({}, *_run_serve_checks(base), 0)
    return {"root": root, "nodes": nodes}


def _agrees(table: dict, parser: ArgumentParser, argv: list[str], base: dict[str, Any]) -> bool:
    """Whether the rebuilt parser has vLLM's option strings, in its order, and gives the base
    argv vLLM's values."""
    check = ArgTableCheck(table)
    if list(check.parser._option_string_actions) != list(parser._option_string_actions):
        return False
    if (rewritten := flexible_argv(argv)) is None:
        return False
    ours = vars(check.parse(rewritten))
    return {d: json_key(v) for d, v in ours.items()} == {d: json_key(v) for d, v in base.items()}


def extract() -> dict:
    """The table for the installed vLLM (JSON-able)."""
    if (installed := installed_vllm()) is None:
        raise LookupError("no installed vLLM distribution: its version names the table")
    dist, version = installed
    parser = serve_parser()
    cpu = current_platform.is_cpu()
    parsers = {flag: list(registered()) for flag, registered in REGISTERED_PARSERS.items()}
    defaults = vars(parser.parse_args([]))
    argv = serve_argv(EngineConfig(name="m", model_path="/unresolved", served_model_names=("m",)), cpu=cpu)
    base = vars(parser.parse_args(argv))
    table = {
        "format": FORMAT, "dist": dist, "version": version, "platform": "cpu" if cpu else "other",
        "parser": {"prefix_chars": parser.prefix_chars, "allow_abbrev": parser.allow_abbrev,
                   "fromfile_prefix_chars": parser.fromfile_prefix_chars},
        "actions": _actions(parser),
        "defaults": {dest: value for dest, value in defaults.items() if plain(value)},
        "unknown_defaults": sorted(dest for dest, value in defaults.items() if not plain(value)),
        "parsers": parsers,
        "serve_checks": _serve_checks(base, _domains(parser, parsers)),
    }
    if not _agrees(table, parser, argv, base):
        table["actions"] = None
    return table


def main() -> None:
    print(write(extract()))


if __name__ == "__main__":
    main()
