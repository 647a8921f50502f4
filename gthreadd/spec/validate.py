"""Check Model files without a daemon (`gthread validate`, `gthreadd --check`), like `nginx -t`."""

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gthreadd.spec.desired import DesiredState, build_desired
from gthreadd.spec.manifests import ManifestError, ParsedFile, load_file
from gthreadd.spec.resource import ModelResource

if TYPE_CHECKING:
    from engine.arg_table_check import ArgTableCheck


def validate_paths(paths: list[str], quiet: bool = False) -> int:
    """Each file on its own (conflicts between files are for the daemon to report, since they
    depend on what else is in models.d). Every error goes to stderr; 0 when all files are valid."""
    failed = False
    for path in paths:
        parsed = load_file(Path(path))
        errors = list(parsed.errors) + engine_errors(parsed, from_table=True)
        for error in errors:
            print(error, file=sys.stderr)
        if errors:
            failed = True
        elif not quiet:
            print(f"{parsed.path}: {len(parsed.models)} Model(s) valid")
    return 1 if failed else 0


def engine_errors(parsed: ParsedFile, from_table: bool = False) -> list[ManifestError]:
    """What an engine would refuse: a modelType gthreadd cannot serve, and extraArgs through vLLM's
    own parser (when vLLM is installed). `from_table`: judged from vLLM's cached argument table
    where it can tell (engine/arg_table_check.py), by a command that has not imported vLLM (5-6 s);
    the daemon has, and asks vLLM itself."""
    from gthreadd.spec.engine_config import unservable

    desired = build_desired([parsed], DesiredState())
    errors = [ManifestError(m.source, why, field=f"{m.resource.metadata.name}: spec.modelType")
              for m in desired.models.values() if (why := unservable(m.resource))]
    with_args = [m for m in desired.models.values() if m.resource.spec.extra_args and not unservable(m.resource)]
    if not with_args or importlib.util.find_spec("vllm") is None:
        return errors
    from gthreadd.spec.engine_config import extra_args_error, validation_config

    check = _table_check() if from_table else None

    def extra_args_why(resource: ModelResource) -> str:
        verdict = check.verdict(validation_config(resource)) if check else None
        return extra_args_error(resource) if verdict is None else verdict

    return errors + [ManifestError(m.source, why, field=f"{m.resource.metadata.name}: spec.extraArgs")
                     for m in with_args if (why := extra_args_why(m.resource))]


def _table_check() -> "ArgTableCheck | None":
    """The check from the installed vLLM's argument table, None where its version cannot be told."""
    from engine.arg_table_cache import installed_table
    from engine.arg_table_check import ArgTableCheck

    table = installed_table(say=lambda line: print(f"gthread: {line}", file=sys.stderr))
    return ArgTableCheck(table) if table is not None else None
