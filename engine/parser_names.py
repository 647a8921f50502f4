"""Tool-call and reasoning parser names, checked at validation. vLLM looks its parsers up only when
an engine's serving layer is built, so a misspelt name would fail every boot; here it fails
validation, naming the flag. A parser plugin may register any name: then the name is the plugin's
to check. No vLLM import: the registered names come from vLLM (engine/args.py) or from its
argument table (engine/arg_table_check.py)."""

from argparse import Namespace
from collections.abc import Callable, Sequence

# flag -> (its dest, the dest of the plugin flag that may register more names)
PARSER_FLAGS = {
    "--tool-call-parser": ("tool_call_parser", "tool_parser_plugin"),
    "--reasoning-parser": ("reasoning_parser", "reasoning_parser_plugin"),
}


def unknown_parser_error(args: Namespace, registered: Callable[[str], Sequence[str]]) -> str:
    """Why a parser named in args is not one of vLLM's, "" when all are. `registered(flag)`: the
    names vLLM has for that flag, asked only when a name needs it."""
    for flag, (dest, plugin) in PARSER_FLAGS.items():
        name = getattr(args, dest)
        if name and not getattr(args, plugin) and name not in (known := registered(flag)):
            return f"{flag} {name!r} is not one of vLLM's parsers: {', '.join(known)}"
    return ""
