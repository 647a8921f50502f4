"""Reading models.d files: every error names the file, document, field and line."""

from pathlib import Path

from gthreadd.spec.manifests import MAX_MANIFEST_BYTES, is_manifest, load_file, parse_text
from gthreadd.spec.resource import model_yaml

GOOD = """\
apiVersion: greenthread.ai/v1alpha1
kind: Model
metadata:
  name: {name}
spec:
  modelName: org/model
"""


def test_multi_document_file():
    parsed = parse_text("---\n" + GOOD.format(name="a") + "---\n" + GOOD.format(name="b") + "---\n", "f.yaml")
    assert [m.metadata.name for m in parsed.models] == ["a", "b"]
    assert parsed.errors == ()


def test_error_names_file_document_field_and_line():
    text = GOOD.format(name="a") + "---\n" + GOOD.format(name="b") + "  tensorParallelSize: 3\n  sleep:\n    idelTimeout: 5m\n"
    parsed = parse_text(text, "models.d/x.yaml")
    assert [m.metadata.name for m in parsed.models] == ["a"]
    by_field = {e.field: e for e in parsed.errors}
    tp = by_field["spec.tensorParallelSize"]
    assert (tp.file, tp.document, tp.line) == ("models.d/x.yaml", 1, 14)
    assert str(tp) == "models.d/x.yaml:14 (document 1): spec.tensorParallelSize: " \
                      "tensorParallelSize must be a power of 2 from 1 to 8, got 3"
    typo = by_field["spec.sleep.idelTimeout"]
    assert (typo.line, typo.message) == (16, "unknown field")


def test_missing_field_points_at_its_parent():
    parsed = parse_text("apiVersion: greenthread.ai/v1alpha1\nkind: Model\nmetadata:\n  name: a\nspec:\n  dtype: float16\n", "f.yaml")
    (error,) = parsed.errors
    assert (error.field, error.message, error.line) == ("spec.modelName", "required field is missing", 5)


def test_invalid_yaml_has_a_line():
    (error,) = parse_text(GOOD.format(name="a") + "  extraArgs: [--x\n", "f.yaml").errors
    assert error.message.startswith("invalid YAML") and error.line == 8
    assert "flow sequence that starts on line 7" in error.message


def test_other_kinds_and_scalars_are_rejected():
    parsed = parse_text("apiVersion: v1\nkind: ConfigMap\n---\njust a string\n", "f.yaml")
    assert [e.document for e in parsed.errors] == [0, 1]
    assert "kind: Model" in parsed.errors[0].message


def test_duplicate_names_in_one_file():
    parsed = parse_text(GOOD.format(name="a") + "---\n" + GOOD.format(name="a"), "f.yaml")
    (error,) = parsed.errors
    assert error.document == 1 and "already defined in document 0" in error.message


def test_unreadable_file(tmp_path):
    (error,) = load_file(tmp_path / "missing.yaml").errors
    assert "cannot read" in error.message


def test_manifest_names():
    assert is_manifest(Path("a.yaml")) and is_manifest(Path("b.yml"))
    for name in [".a.yaml", "a.yaml~", "#a.yaml#", ".a.yaml.swp", "a.json", "a.yaml.bak"]:
        assert not is_manifest(Path(name)), name


def test_a_symlink_out_of_models_d_is_refused_and_one_inside_is_read(tmp_path):
    models_d = tmp_path / "models.d"
    models_d.mkdir()
    (models_d / "real.yaml").write_text(model_yaml("m", "org/m"))
    (models_d / "alias.yaml").symlink_to(models_d / "real.yaml")
    (models_d / "passwd.yaml").symlink_to("/etc/passwd")
    assert [m.metadata.name for m in load_file(models_d / "alias.yaml").models] == ["m"]
    errors = load_file(models_d / "passwd.yaml").errors
    assert len(errors) == 1 and "a symlink out of" in str(errors[0]) and "/etc/passwd" in str(errors[0])


def test_a_file_too_large_to_be_a_model_is_refused_unread(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_MANIFEST_BYTES)
    errors = load_file(big).errors
    assert len(errors) == 1 and f"a Model file is at most {MAX_MANIFEST_BYTES} bytes" in str(errors[0])
