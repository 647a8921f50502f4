import argparse

import pytest

from gthreadd.settings import DaemonSettings, SettingsError, add_flags, load_settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    return parser.parse_args(argv)


def test_defaults():
    s = DaemonSettings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert str(s.models_dir) == "/etc/gthread/models.d" and s.rescan_interval.total_seconds() == 30


def test_flags_override_the_file(tmp_path):
    config = tmp_path / "gthreadd.yaml"
    config.write_text("listen: 0.0.0.0:9000\nmodelsDir: /srv/models\nlogLevel: debug\n")
    s = load_settings(config, parse("--listen", "127.0.0.1:9001"))
    assert (s.host, s.port, str(s.models_dir), s.log_level) == ("127.0.0.1", 9001, "/srv/models", "debug")


def test_ipv6_listen():
    assert (DaemonSettings(listen="[::1]:8000").host, DaemonSettings(listen="[::1]:8000").port) == ("::1", 8000)


@pytest.mark.parametrize("text,words", [
    ("listen: nowhere\n", "listen: expected HOST:PORT"),
    ("logLevel: loud\n", "logLevel"),
    ("modelDir: /x\n", "modelDir: Extra inputs are not permitted"),
    ("rescanInterval: often\n", "rescanInterval"),
    ("- a list\n", "expected a mapping"),
    ("listen: [\n", "gthreadd.yaml"),
])
def test_bad_settings_name_the_file_and_key(tmp_path, text, words):
    config = tmp_path / "gthreadd.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(config, parse())
    assert words in str(info.value) and str(config) in str(info.value)


def test_missing_explicit_config(tmp_path):
    with pytest.raises(SettingsError, match="No such file"):
        load_settings(tmp_path / "nope.yaml", parse())
