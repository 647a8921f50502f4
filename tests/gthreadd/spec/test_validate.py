"""`gthread validate` judges extraArgs from vLLM's cached argument table, without importing vLLM,
and says what vLLM's own check says."""

import subprocess
import sys
from pathlib import Path

from gthreadd.spec.manifests import load_file
from gthreadd.spec.validate import engine_errors

RECIPES = Path(__file__).resolve().parents[2] / "fixtures" / "seeds" / "001_recipes.yaml"
VALIDATE = ("import sys; from gthreadd.spec.validate import validate_paths; code = validate_paths(sys.argv[1:]); "
            "print('vllm imported' if 'vllm' in sys.modules else 'no vllm'); sys.exit(code)")


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", VALIDATE, str(path)], capture_output=True, text=True, timeout=120)


def test_extra_args_are_judged_without_vllm_as_vllm_judges_them(vllm_args_cache, tmp_path):
    result = validate(RECIPES)
    assert (result.returncode, result.stdout) == (0, f"{RECIPES}: 6 Model(s) valid\nno vllm\n"), result.stderr
    assert result.stderr == "" and engine_errors(load_file(RECIPES)) == [], "vLLM's own check agrees"
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: a\nspec:\n"
                   "  modelName: x/y\n  extraArgs: [--max-model-len, '4096', --no-such-flag]\n")
    result = validate(bad)
    assert (result.returncode, result.stdout) == (1, "no vllm\n")
    exact = [str(e) for e in engine_errors(load_file(bad))]
    assert result.stderr.splitlines() == exact == [f"{bad}: a: spec.extraArgs: unrecognized arguments: --no-such-flag"]


def test_what_the_table_cannot_judge_vllm_does(vllm_args_cache, tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: a\nspec:\n"
                   "  modelName: x/y\n  extraArgs: [--compilation-config.mode, '3', --no-such-flag]\n")
    result = validate(odd)
    assert result.returncode == 1 and result.stdout.endswith("vllm imported\n")
    assert f"{odd}: a: spec.extraArgs: unrecognized arguments: --no-such-flag" in result.stderr.splitlines()
