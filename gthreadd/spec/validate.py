"""Check Model files without a daemon (`gthread validate`, `gthreadd --check`), like `nginx -t`."""

import importlib.util
import sys
from pathlib import Path

from gthreadd.spec.desired import DesiredState, build_desired
from gthreadd.spec.manifests import ManifestError, ParsedFile, load_file


def validate_paths(paths: list[str], quiet: bool = False) -> int:
    """Each file on its own (conflicts between files are for the daemon to report, since they
    depend on what else is in models.d). Every error goes to stderr; 0 when all files are valid."""
    failed = False
    for path in paths:
        parsed = load_file(Path(path))
        errors = list(parsed.errors) + engine_errors(parsed)
        for error in errors:
            print(error, file=sys.stderr)
        if errors:
            failed = True
        elif not quiet:
            print(f"{parsed.path}: {len(parsed.models)} Model(s) valid")
    return 1 if failed else 0


def engine_errors(parsed: ParsedFile) -> list[ManifestError]:
    """What an engine would refuse: a modelType gthreadd cannot serve, and extraArgs through vLLM's
    own parser (when vLLM is installed)."""
    from gthreadd.spec.engine_config import unservable

    desired = build_desired([parsed], DesiredState())
    errors = [ManifestError(m.source, why, field=f"{m.resource.metadata.name}: spec.modelType")
              for m in desired.models.values() if (why := unservable(m.resource))]
    with_args = [m for m in desired.models.values() if m.resource.spec.extra_args and not unservable(m.resource)]
    if not with_args or importlib.util.find_spec("vllm") is None:
        return errors
    from gthreadd.spec.engine_config import extra_args_error

    return errors + [ManifestError(m.source, why, field=f"{m.resource.metadata.name}: spec.extraArgs")
                     for m in with_args if (why := extra_args_error(m.resource))]
