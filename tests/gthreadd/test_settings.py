import argparse

import pytest

from gthreadd.main import build_parser
from gthreadd.settings import DaemonSettings, SettingsError, load_settings
from memory.host_limit import filesystem_bytes, memory_limit


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


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
    ("hostTierSize: 2Gb\n", "hostTierSize: expected a size such as 16Gi"),
    ("hostTierSize: 150%\n", "at most 100%"),
    ("apiKeys: sk-1\n", "apiKeys: Input should be a valid list"),
    ("shutdownTimeout: soon\n", "shutdownTimeout"),
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


def test_sizes_and_shares_of_ram():
    assert DaemonSettings(host_tier_size="1Gi").host_tier_bytes == 2**30
    assert DaemonSettings(host_tier_size="512M").host_tier_bytes == 512 * 10**6
    assert 0 < DaemonSettings(host_tier_size="10%").host_tier_bytes < DaemonSettings(host_tier_size="20%").host_tier_bytes
    assert DaemonSettings(host_memory_limit="50%").host_limit_bytes == memory_limit() // 2


def test_the_host_tier_is_never_larger_than_its_filesystem(tmp_path):
    room = filesystem_bytes(tmp_path / "shm" / "not-yet")  # the directory is created at start
    assert room == filesystem_bytes(tmp_path) and room > 0
    assert DaemonSettings(host_tier_size="1000Ti", host_tier_dir=tmp_path / "shm").host_tier_bytes == room


def test_api_keys_come_from_the_file_only_and_stay_hidden(tmp_path):
    config = tmp_path / "gthreadd.yaml"
    config.write_text("apiKeys: [sk-secret]\n")
    s = load_settings(config, parse())
    assert [k.get_secret_value() for k in s.api_keys] == ["sk-secret"] and "sk-secret" not in repr(s)
    with pytest.raises(SystemExit):
        parse("--api-keys", "sk-secret")


def test_the_control_socket_follows_systemds_runtime_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/gthread")
    assert str(DaemonSettings().socket_path) == "/run/gthread/gthreadd.sock"
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    assert DaemonSettings(state_dir=tmp_path).socket_path == tmp_path / "gthreadd.sock"
