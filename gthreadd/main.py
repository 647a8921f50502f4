"""`gthreadd`: the daemon's command line."""

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from gthreadd import __version__
from gthreadd.observe import logs
from gthreadd.settings import SettingsError, add_flags, load_settings


def build_parser() -> argparse.ArgumentParser:
    """No abbreviated flags: `--api-keys KEY` must not be taken for `--api-keys-file`."""
    parser = argparse.ArgumentParser(prog="gthreadd", description="Serve the Models in models.d on one "
                                     "OpenAI-compatible port.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, help="settings file (default /etc/gthread/gthreadd.yaml if present)")
    add_flags(parser)
    parser.add_argument("--check", nargs="+", metavar="FILE", help="validate Model files and exit (0 when valid)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.check:
        from gthreadd.spec.validate import validate_paths

        sys.exit(validate_paths(args.check))
    try:
        settings = load_settings(args.config, args)
    except SettingsError as exc:
        print(f"gthreadd: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level)
    import uvloop

    from engine.compat import max_audio_file_bytes
    from engine.metrics import EngineMetrics
    from engine.vllm_engine import VllmEngine
    from gthreadd.daemon import Daemon, StartupRefused
    from gthreadd.observe.log_tap import LogTap
    from gthreadd.observe.metrics import Metrics
    from gthreadd.observe.model_logs import ModelLogs
    from gthreadd.tenants.charges import Charges

    metrics = Metrics()
    model_logs = ModelLogs()
    charges = Charges(metrics.count_key_tokens)
    engines = functools.partial(VllmEngine, metrics=EngineMetrics(metrics.registry, on_finished=charges.finished))
    tap = LogTap(model_logs.add)
    tap.start()
    status = 0
    try:
        daemon = Daemon(settings, engines, metrics=metrics, model_logs=model_logs, max_audio_bytes=max_audio_file_bytes(),
                        charges=charges)
        uvloop.run(daemon.run())
    except StartupRefused as exc:
        print(f"gthreadd: {exc}", file=sys.stderr)
        status = 1
    finally:
        tap.stop()
    _exit(status)


def _exit(status: int) -> NoReturn:
    """Leave without the interpreter's teardown. Triton, which vLLM imports, is a nanobind module,
    and nanobind prints every object of its still alive at teardown as a leak: hundreds of lines
    after the daemon's last word, a refusal's one line included. Everything the daemon owns has
    been stopped by now (Daemon.run), and the logs are flushed here."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

if __name__ == "__main__":
    main()
