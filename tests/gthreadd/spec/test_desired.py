"""models.d -> desired state: last good versions, name ownership, deletion."""

from gthreadd.spec.desired import DesiredState, build_desired, scan_directory
from gthreadd.spec.manifests import parse_text
from gthreadd.spec.resource import model_yaml

def doc(name, upstream="org/model"):
    return model_yaml(name, upstream)


def state(files: dict[str, str], previous=DesiredState()):
    return build_desired([parse_text(text, path) for path, text in files.items()], previous)


def test_models_from_all_files():
    s = state({"a.yaml": doc("a"), "b.yaml": doc("b") + "---\n" + doc("c")})
    assert list(s.models) == ["a", "b", "c"] and s.errors == ()
    assert s.models["c"].source == "b.yaml"


def test_broken_file_keeps_its_last_good_version():
    first = state({"a.yaml": doc("a", "org/v1"), "b.yaml": doc("b")})
    second = state({"a.yaml": doc("a", "org/v2") + "  dtype: int3\n", "b.yaml": doc("b")}, first)
    assert second.models["a"].resource.spec.model_name == "org/v1"
    assert [e.field for e in second.errors_for("a.yaml")] == ["spec.dtype"]
    fixed = state({"a.yaml": doc("a", "org/v2")}, second)
    assert fixed.models["a"].resource.spec.model_name == "org/v2" and fixed.errors == ()


def test_a_broken_new_file_contributes_nothing():
    s = state({"a.yaml": "kind: [", "b.yaml": doc("b")})
    assert list(s.models) == ["b"] and len(s.errors) == 1


def test_deleted_file_takes_its_models():
    first = state({"a.yaml": doc("a"), "b.yaml": doc("b")})
    assert list(state({"b.yaml": doc("b")}, first).models) == ["b"]


def test_second_definition_of_a_name_is_rejected():
    s = state({"a.yaml": doc("x", "org/first"), "b.yaml": doc("x", "org/second")})
    assert s.models["x"].source == "a.yaml"
    (error,) = s.errors
    assert error.file == "b.yaml" and "already defined in a.yaml" in error.message


def test_current_owner_keeps_its_name_when_an_earlier_file_claims_it():
    first = state({"m.yaml": doc("x", "org/first")})
    second = state({"a.yaml": doc("x", "org/intruder"), "m.yaml": doc("x", "org/first")}, first)
    assert second.models["x"].source == "m.yaml"
    assert second.errors[0].file == "a.yaml"


def test_scan_ignores_dotfiles_and_editor_files(tmp_path):
    (tmp_path / "a.yaml").write_text(doc("a"))
    (tmp_path / ".a.yaml.swp").write_text("garbage")
    (tmp_path / "a.yaml~").write_text("garbage")
    (tmp_path / "notes.txt").write_text("garbage")
    assert [f.path for f in scan_directory(tmp_path)] == [str(tmp_path / "a.yaml")]
    assert scan_directory(tmp_path / "missing") == []
