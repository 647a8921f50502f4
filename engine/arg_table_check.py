"""Judge extraArgs from vLLM's argument table (engine/arg_table.py) without importing vLLM, which
takes 5-6 s with torch: `gthread validate` answers in a fraction of a second.

vLLM's parser is an argparse.ArgumentParser, so one rebuilt from the table with the same option
strings, nargs, choices, actions and value types gives the same values and the same messages for
the same argv. A verdict is vLLM's own or there is none: `ArgTableCheck.verdict` returns "" (valid),
the message build_args raises, or None where the table cannot tell (a value type or action it
cannot reproduce, FlexibleArgumentParser's rewrites of `-O`, dotted and `--config` arguments, serve
checks on values they were not run with), and then vLLM itself is asked
(gthreadd/spec/engine_config.extra_args_error). The checks run in build_args's order, so the first
error is the one it reports.
"""

import argparse
import json
from argparse import ArgumentTypeError, Namespace
from collections.abc import Callable
from typing import Any

import regex  # vLLM's own regular expressions: the same engine gives the same matches

from engine.config import EngineConfig
from engine.owned_flags import owned_flag_error
from engine.parser_names import PARSER_FLAGS, unknown_parser_error
from engine.serve_argv import serve_argv

FORMAT = 1
"""The table's layout; a new one is read again from vLLM (the cache file is named by it)."""

ACCUMULATING = frozenset({"append", "append_const", "count", "extend"})
"""Action kinds that add to their default, which the rebuilt parser is given as it is."""

UNKNOWN = object()
"""A value the table could not hold (not plain JSON): no verdict depends on it."""


class CannotJudge(Exception):
    """The rebuilt parser met something of vLLM's that the table does not reproduce."""


def plain(value: Any) -> bool:
    """Whether JSON holds value exactly: its types, not only its text."""
    if type(value) in (list, dict):
        items = value.items() if type(value) is dict else enumerate(value)
        return all((type(value) is list or type(k) is str) and plain(v) for k, v in items)
    return type(value) in (str, int, float, bool, type(None))


def json_key(value: Any) -> str | None:
    """value as the serve checks' graph keys it, None when it cannot be."""
    return json.dumps(value, sort_keys=True) if plain(value) else None


def human_readable_int(value: str) -> int:
    """vllm/utils/argparse_utils.py's, message for message: '1k' is 1,000, '1K' 1,024, '25.6k' 25,600."""
    value = value.strip()
    match = regex.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        decimal_multiplier = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
        binary_multiplier = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        number, suffix = match.groups()
        if suffix in decimal_multiplier:
            return int(float(number) * decimal_multiplier[suffix])
        try:
            return int(number) * binary_multiplier[suffix]
        except ValueError as e:
            raise ArgumentTypeError(
                "Decimals are not allowed "
                f"with binary suffixes like {suffix}. Did you mean to use "
                f"{number}{suffix.lower()} instead?") from e
    return int(value)


def human_readable_int_or_auto(value: str) -> int:
    """vllm/utils/argparse_utils.py's: -1 or "auto" ask vLLM to choose."""
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


def _parse(inner: Callable[[str], Any], shown: str | None) -> Callable[[str], Any]:
    """vllm/engine/arg_utils.py's parse_type. Its message shows the inner type, which for a function
    is its address in vLLM's process (`shown` None): no verdict then."""
    def _parse_type(val: str) -> Any:
        try:
            return inner(val)
        except ValueError as e:
            if shown is None:
                raise CannotJudge(val) from e
            raise ArgumentTypeError(f"Value {val} cannot be converted to {shown}.") from e
    return _parse_type


def _optional(inner: Callable[[str], Any], shown: str | None) -> Callable[[str], Any]:
    """vllm/engine/arg_utils.py's optional_type: "" or "None" are None."""
    parse = _parse(inner, shown)

    def _optional_type(val: str) -> Any:
        return None if val in ("", "None") else parse(val)
    return _optional_type


def union_dict_and_str(val: str) -> Any:
    """vllm/engine/arg_utils.py's: a JSON object where it looks like one, else the string."""
    if not regex.match(r"(?s)^\s*{.*}\s*$", val):
        return str(val)
    return _optional(json.loads, None)(val)


def _unjudged(val: str) -> Any:
    raise CannotJudge(val)


BUILTIN_TYPES = {"str": str, "int": int, "float": float}
NAMED_TYPES = BUILTIN_TYPES | {
    "json": json.loads, "human_readable_int": human_readable_int,
    "human_readable_int_or_auto": human_readable_int_or_auto, "union_dict_and_str": union_dict_and_str,
}


def value_type(tag: str) -> Callable[[str], Any] | None:
    """The type function a table's tag stands for (None: argparse's identity). Named as vLLM's are,
    since argparse's "invalid <name> value" message names it."""
    if tag == "none":
        return None
    wrapper, _, inner = tag.partition(":")
    if wrapper in ("optional", "parse") and inner:
        shown = f"<class '{inner}'>" if inner in BUILTIN_TYPES else None
        inner_type = value_type(inner)
        return _optional(inner_type, shown) if wrapper == "optional" else _parse(inner_type, shown)
    return NAMED_TYPES.get(tag, _unjudged)


class _Refused(Exception):
    """What build_args's parser raises as EngineArgsError: argparse's message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _Refused(message)


class _Unjudged(argparse.Action):
    """An action the table cannot reproduce (vLLM's own Action classes): no verdict once it is used."""

    def __call__(self, parser, namespace, values, option_string=None):
        raise CannotJudge(option_string or self.dest)


def table_parser(table: dict) -> argparse.ArgumentParser:
    """vLLM's serve parser rebuilt from the table. Options the argv leaves out are absent from the
    namespace (SUPPRESS) and filled in afterwards with the values vLLM's parser gave them."""
    parser = _Parser(prog="extraArgs", add_help=False, **table["parser"])
    for action in table["actions"]:
        kind, options = action["kind"], action["option_strings"]
        kwargs: dict[str, Any] = {"action": {"opaque": _Unjudged, "boolean_optional": argparse.BooleanOptionalAction}
                                  .get(kind, kind)}
        if options:
            kwargs |= {"dest": action["dest"], "required": action["required"],
                       "default": action["default"] if kind in ACCUMULATING else argparse.SUPPRESS}
        else:
            kwargs |= {"default": action["default"], "metavar": action["metavar"]}
            options = [action["dest"]]
        if kind == "boolean_optional":  # it adds the --no- forms itself
            options = [o for o in options if not (o.startswith("--no-") and "--" + o[5:] in options)]
        if kind in ("store_const", "append_const"):
            kwargs["const"] = action["const"]
        if kind in ("store", "append", "extend", "opaque"):
            kwargs["nargs"] = action["nargs"]
        if kind in ("store", "append", "extend"):
            kwargs |= {"const": action["const"], "type": value_type(action["type"]), "choices": action["choices"]}
        parser.add_argument(*options, **kwargs)
    return parser


def flexible_argv(argv: list[str]) -> list[str] | None:
    """FlexibleArgumentParser.parse_args's rewrite of argv: `--flag_name` is `--flag-name`. None where
    it does more than that: `-O3`, `--help=...`, dotted `--a.b value` and `--config FILE`."""
    out = []
    for arg in argv:
        if arg == "--config" or arg.startswith(("-O", "--help=")):
            return None
        if arg.startswith("--"):
            key, eq, value = arg.partition("=")
            arg = regex.sub(r"(?<=--)[^\.]*", lambda m: m.group(0).replace("_", "-"), key, count=1) + eq + value
        if arg.startswith("-") and "." in arg.split("=", 1)[0]:
            return None
        out.append(arg)
    return out


def walk_serve_checks(graph: dict, values: dict[str, Any]) -> str | None:
    """vLLM's validate_parsed_serve_args on these values, as recorded (engine/arg_table.py): each
    node names what it read next and where each value it was run with led; None where these
    values go where it was not run."""
    node = graph["nodes"][graph["root"]]
    while "read" in node:
        following = node["next"].get(json_key(values.get(node["read"], UNKNOWN)))
        if following is None:
            return None
        node = graph["nodes"][following]
    return node["verdict"]


class ArgTableCheck:
    """One table's parser, built once for every Model checked against it. A table whose rebuilt
    parser disagreed with vLLM's when it was read (no "actions") judges nothing."""

    def __init__(self, table: dict):
        self.table = table
        self.parser = table_parser(table) if table["actions"] is not None else None

    def parse(self, argv: list[str]) -> Namespace:
        """argv (as flexible_argv rewrites it) through the rebuilt parser, every dest filled in.
        Raises _Refused with argparse's message, CannotJudge where the table cannot tell."""
        args = self.parser.parse_args(argv)
        for dest, value in self.table["defaults"].items():
            if not hasattr(args, dest):
                setattr(args, dest, value)
        for dest in self.table["unknown_defaults"]:
            if not hasattr(args, dest):
                setattr(args, dest, UNKNOWN)
        return args

    def verdict(self, config: EngineConfig) -> str | None:
        """"" when build_args accepts config, its message when it refuses it, None: ask vLLM."""
        if why := owned_flag_error(config.extra_args, config.load_format):
            return why
        argv = flexible_argv(serve_argv(config, cpu=self.table["platform"] == "cpu"))
        if argv is None or self.parser is None:
            return None
        try:
            args = self.parse(argv)
        except _Refused as exc:
            return str(exc)
        except CannotJudge:
            return None
        if (serve_check := walk_serve_checks(self.table["serve_checks"], vars(args))) != "":
            return serve_check
        if any(getattr(args, dest) is UNKNOWN for pair in PARSER_FLAGS.values() for dest in pair):
            return None
        return unknown_parser_error(args, self.table["parsers"].__getitem__)
