"""Turn an EngineConfig into vLLM's own parsed arguments.

`extraArgs` go through vLLM's serve argument parser, so an unknown or malformed flag is rejected
with vLLM's message before any process starts. Flags that the Model spec owns (dtype, memory share,
parallelism...) may not be set again in extraArgs (engine/owned_flags.py). `gthread validate`
reaches the same verdicts without importing vLLM from a table of this parser (engine/arg_table.py).
"""

import functools
from argparse import Namespace

from engine.compat import (
    FlexibleArgumentParser, ReasoningParserManager, ToolParserManager, current_platform, make_arg_parser,
    validate_parsed_serve_args,
)
from engine.config import EngineConfig
from engine.owned_flags import owned_flag_error
from engine.parser_names import unknown_parser_error
from engine.serve_argv import serve_argv

# parser flag -> vLLM's registered names for it
REGISTERED_PARSERS = {
    "--tool-call-parser": ToolParserManager.list_registered,
    "--reasoning-parser": ReasoningParserManager.list_registered,
}


def records_stats(config: EngineConfig) -> bool:
    """Whether the engine records vLLM's serving statistics (its `vllm:*` series on /metrics).
    The daemon always hands vLLM `--disable-log-stats` (no periodic log lines) and records them
    itself; a Model whose extraArgs say `--disable-log-stats` records none, as `vllm serve` does,
    and saves the few percent of the front end's CPU per streamed token that vLLM's per-step
    statistics cost (bench/README.md)."""
    return "--disable-log-stats" not in config.extra_args


class EngineArgsError(ValueError):
    """extraArgs that vLLM's parser rejects, or that fight a spec field."""


class _RaisingParser(FlexibleArgumentParser):
    def error(self, message: str):
        raise EngineArgsError(message)


@functools.cache
def serve_parser() -> FlexibleArgumentParser:
    """vLLM's serve parser, raising EngineArgsError where `vllm serve` would exit."""
    return make_arg_parser(_RaisingParser(prog="extraArgs", add_help=False))


def build_args(config: EngineConfig) -> Namespace:
    if why := owned_flag_error(config.extra_args, config.load_format):
        raise EngineArgsError(why)
    args = serve_parser().parse_args(serve_argv(config, cpu=current_platform.is_cpu()))
    try:
        validate_parsed_serve_args(args)
    except (TypeError, ValueError) as exc:
        raise EngineArgsError(str(exc)) from exc
    if why := unknown_parser_error(args, lambda flag: REGISTERED_PARSERS[flag]()):
        raise EngineArgsError(why)
    return args
