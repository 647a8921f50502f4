"""`gthreadd`: the daemon's command line."""

import argparse
import functools
import sys
from pathlib import Path

from gthreadd.observe import logs
from gthreadd.settings import SettingsError, add_flags, load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="gthreadd", description="Serve the Models in models.d on one OpenAI-compatible port.")
    parser.add_argument("--config", type=Path, help="settings file (default /etc/gthread/gthreadd.yaml if present)")
    add_flags(parser)
    parser.add_argument("--check", nargs="+", metavar="FILE", help="validate Model files and exit (0 when valid)")
    args = parser.parse_args(argv)
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

    from engine.metrics import EngineMetrics
    from engine.vllm_engine import VllmEngine
    from gthreadd.daemon import Daemon
    from gthreadd.observe.log_tap import LogTap
    from gthreadd.observe.metrics import Metrics
    from gthreadd.observe.model_logs import ModelLogs

    from memory.host_tier import HostTierBusy

    metrics = Metrics()
    model_logs = ModelLogs()
    engines = functools.partial(VllmEngine, metrics=EngineMetrics(metrics.registry))
    tap = LogTap(model_logs.add)
    tap.start()
    try:
        uvloop.run(Daemon(settings, engines, metrics=metrics, model_logs=model_logs).run())
    except HostTierBusy as exc:
        print(f"gthreadd: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        tap.stop()


if __name__ == "__main__":
    main()
