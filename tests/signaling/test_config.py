from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from signaling.config import ConfigError, Secret, Settings, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write_toml(tmp_path: Path, text: str, name: str = "mediation.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("certificate\n")
    key.write_text("key\n")
    return cert, key


# --- loading order -----------------------------------------------------------------------


def test_defaults_apply_when_there_is_no_file_and_no_variable() -> None:
    settings = load_settings(env={})

    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("data")
    assert settings.db_path == Path("data") / "metadata.sqlite3"
    assert settings.objects_dir == Path("data") / "objects"
    assert settings.tls_enabled is False
    assert settings.ring_timeout_s == 30
    assert settings.max_participants == 8
    assert settings.district_code == "000000"
    assert settings.demo_accounts is True
    assert settings.s3_secret_key == Secret("")
    assert settings.s3_bucket == "mediation"


def test_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'host = "0.0.0.0"\nport = 9000\ndata_dir = "/srv/mediation"\nring_timeout_s = 12.5\n',
    )

    settings = load_settings(path, env={})

    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.data_dir == Path("/srv/mediation")
    assert settings.db_path == Path("/srv/mediation/metadata.sqlite3")
    assert settings.ring_timeout_s == 12.5
    assert settings.heartbeat_s == 5  # untouched settings keep their default


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9000\nmax_wait_s = 600\n")

    settings = load_settings(path, env={"MEDIATION_PORT": "9100"})

    assert settings.port == 9100
    assert settings.max_wait_s == 600


def test_mediation_config_variable_picks_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9000\n")

    settings = load_settings(env={"MEDIATION_CONFIG": str(path)})

    assert settings.port == 9000


def test_explicit_path_wins_over_mediation_config(tmp_path: Path) -> None:
    chosen = write_toml(tmp_path, "port = 9000\n", "chosen.toml")
    ignored = write_toml(tmp_path, "port = 9999\n", "ignored.toml")

    settings = load_settings(chosen, env={"MEDIATION_CONFIG": str(ignored)})

    assert settings.port == 9000


def test_variables_without_the_mediation_prefix_are_ignored() -> None:
    settings = load_settings(env={"PORT": "1", "HOME": "/root", "mediation_port": "1"})

    assert settings.port == 8080


def test_file_may_be_given_as_a_string(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = 9000\n")

    assert load_settings(str(path), env={}).port == 9000


# --- refusing bad values -----------------------------------------------------------------


def test_bad_value_in_environment_is_refused_naming_setting_and_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_RING_TIMEOUT_S": "abc"})

    assert caught.value.setting == "ring_timeout_s"
    assert str(caught.value) == (
        "setting ring_timeout_s: must be a number > 0 (got 'abc' from MEDIATION_RING_TIMEOUT_S)"
    )


def test_out_of_range_value_in_environment_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_RING_TIMEOUT_S": "0"})

    assert str(caught.value) == (
        "setting ring_timeout_s: must be a number > 0 (got '0' from MEDIATION_RING_TIMEOUT_S)"
    )


def test_bad_value_in_file_is_refused_naming_setting_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "max_participants = 5\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    assert caught.value.setting == "max_participants"
    assert caught.value.source == str(path)
    assert str(caught.value) == (
        f"setting max_participants: must be an integer >= 6 (got 5 from {path})"
    )


def test_wrongly_typed_value_in_file_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'port = "8080"\n')

    with pytest.raises(ConfigError, match=r"^setting port: .*\(got '8080' from .*\.toml\)$"):
        load_settings(path, env={})


def test_integer_is_accepted_for_a_number_setting_in_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "heartbeat_s = 2\n")

    settings = load_settings(path, env={})

    assert settings.heartbeat_s == 2.0
    assert isinstance(settings.heartbeat_s, float)


@pytest.mark.parametrize(
    "toml",
    ["max_participants = 6.0", "demo_accounts = 1", "ring_timeout_s = true", "port = true"],
)
def test_number_and_boolean_types_are_not_mixed_up_in_file(tmp_path: Path, toml: str) -> None:
    path = write_toml(tmp_path, toml + "\n")

    with pytest.raises(ConfigError, match=f"^setting {toml.split()[0]}: "):
        load_settings(path, env={})


@pytest.mark.parametrize(
    ("var", "value", "setting"),
    [
        ("MEDIATION_PORT", "65536", "port"),
        ("MEDIATION_PORT", "-1", "port"),
        ("MEDIATION_PORT", "80.5", "port"),
        ("MEDIATION_HOST", "", "host"),
        ("MEDIATION_DATA_DIR", "", "data_dir"),
        ("MEDIATION_HEARTBEAT_S", "-5", "heartbeat_s"),
        ("MEDIATION_SESSION_TTL_S", "inf", "session_ttl_s"),
        ("MEDIATION_SHUTDOWN_TIMEOUT_S", "nan", "shutdown_timeout_s"),
        ("MEDIATION_MAX_PARTICIPANTS", "5", "max_participants"),
        ("MEDIATION_SEND_QUEUE_MAX", "0", "send_queue_max"),
        ("MEDIATION_RATE_LIMIT_PER_S", "0", "rate_limit_per_s"),
        ("MEDIATION_RATE_LIMIT_BURST", "0", "rate_limit_burst"),
        ("MEDIATION_RATE_LIMIT_CLOSE_AFTER", "0", "rate_limit_close_after"),
        ("MEDIATION_MAX_MESSAGE_BYTES", "1023", "max_message_bytes"),
        ("MEDIATION_MAX_MESSAGE_BYTES", "1048577", "max_message_bytes"),
        ("MEDIATION_LOG_FORMAT", "xml", "log_format"),
        ("MEDIATION_LOG_LEVEL", "LOUD", "log_level"),
        ("MEDIATION_LOG_LEVEL", "NOTSET", "log_level"),
        ("MEDIATION_DISTRICT_CODE", "12345", "district_code"),
        ("MEDIATION_DISTRICT_CODE", "12345a", "district_code"),
        ("MEDIATION_TRUSTED_PROXIES", "10.0.0.1,proxy.local", "trusted_proxies"),
        ("MEDIATION_TRUSTED_PROXIES", "10.0.0.0/33", "trusted_proxies"),
        ("MEDIATION_PUBLIC_ORIGIN", "https://mediation.example.org/", "public_origin"),
        ("MEDIATION_PUBLIC_ORIGIN", "ftp://mediation.example.org", "public_origin"),
        ("MEDIATION_PUBLIC_ORIGIN", "mediation.example.org", "public_origin"),
        ("MEDIATION_PUBLIC_ORIGIN", "https://Mediation.example.org", "public_origin"),
        ("MEDIATION_PUBLIC_ORIGIN", "https://mediation.example.org:70000", "public_origin"),
        (
            "MEDIATION_ALLOWED_ORIGINS",
            "https://a.example.org,https://b.example.org/x",
            "allowed_origins",
        ),
    ],
)
def test_each_limit_is_checked_and_the_error_names_setting_and_variable(
    var: str, value: str, setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={var: value})

    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"setting {setting}: ")
    assert str(caught.value).endswith(f" from {var})")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("var", "value", "setting", "expected"),
    [
        ("MEDIATION_PORT", "0", "port", 0),
        ("MEDIATION_PORT", "65535", "port", 65535),
        ("MEDIATION_MAX_PARTICIPANTS", "6", "max_participants", 6),
        ("MEDIATION_MAX_MESSAGE_BYTES", "1024", "max_message_bytes", 1024),
        ("MEDIATION_MAX_MESSAGE_BYTES", "1048576", "max_message_bytes", 1048576),
        ("MEDIATION_LOG_FORMAT", "json", "log_format", "json"),
        ("MEDIATION_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("MEDIATION_DISTRICT_CODE", "012345", "district_code", "012345"),
        ("MEDIATION_RATE_LIMIT_PER_S", "0.5", "rate_limit_per_s", 0.5),
        ("MEDIATION_PUBLIC_ORIGIN", "https://mediation.example.org", "public_origin", None),
        ("MEDIATION_PUBLIC_ORIGIN", "http://127.0.0.1:8080", "public_origin", None),
        ("MEDIATION_PUBLIC_ORIGIN", "https://[::1]:8443", "public_origin", None),
    ],
)
def test_values_at_the_limits_are_accepted(
    var: str, value: str, setting: str, expected: object
) -> None:
    settings = load_settings(env={var: value})

    assert getattr(settings, setting) == (value if expected is None else expected)


def test_unknown_key_in_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "ring_timeout = 10\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    assert caught.value.setting == "ring_timeout"
    assert str(caught.value) == (
        f"setting ring_timeout: unknown setting (did you mean ring_timeout_s?) (from {path})"
    )


def test_table_in_file_is_refused_as_unknown_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[mediation]\nport = 9000\n")

    with pytest.raises(ConfigError, match=r"^setting mediation: unknown setting"):
        load_settings(path, env={})


def test_unknown_mediation_variable_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_PORTT": "9000"})

    assert caught.value.setting == "portt"
    assert "MEDIATION_PORTT" in str(caught.value)
    assert "did you mean MEDIATION_PORT?" in str(caught.value)


def test_missing_config_file_is_refused_naming_where_it_was_given(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_CONFIG": str(missing)})

    assert caught.value.setting == "config"
    assert str(caught.value) == (
        f"setting config: cannot read the file: No such file or directory "
        f"(got '{missing}' from MEDIATION_CONFIG)"
    )


def test_invalid_toml_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "port = = 1\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    assert caught.value.setting == "config"
    assert str(caught.value).startswith("setting config: not a valid TOML file: ")
    assert str(caught.value).endswith(f"(got '{path}' from --config)")
    assert "\n" not in str(caught.value)


# --- parsing booleans and lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("True", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("FALSE", False),
        ("no", False),
        ("off", False),
    ],
)
def test_boolean_variables_accept_the_usual_words(text: str, expected: bool) -> None:
    settings = load_settings(env={"MEDIATION_DEMO_ACCOUNTS": text, "MEDIATION_S3_SECURE": text})

    assert settings.demo_accounts is expected
    assert settings.s3_secure is expected


@pytest.mark.parametrize("text", ["", "2", "maybe", "enabled"])
def test_boolean_variable_refuses_other_words(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_DEMO_ACCOUNTS": text})

    assert str(caught.value) == (
        "setting demo_accounts: must be true or false (environment also accepts 1/0, yes/no, "
        f"on/off) (got {text!r} from MEDIATION_DEMO_ACCOUNTS)"
    )


def test_list_variables_are_comma_separated_and_trimmed() -> None:
    settings = load_settings(
        env={
            "MEDIATION_TRUSTED_PROXIES": " 10.0.0.0/8 , 192.168.1.7,::1 ,",
            "MEDIATION_ALLOWED_ORIGINS": "https://a.example.org,http://b.example.org:8080",
        }
    )

    assert settings.trusted_proxies == ("10.0.0.0/8", "192.168.1.7", "::1")
    assert settings.allowed_origins == ("https://a.example.org", "http://b.example.org:8080")


def test_empty_list_variable_clears_the_list(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'trusted_proxies = ["10.0.0.1"]\n')

    settings = load_settings(path, env={"MEDIATION_TRUSTED_PROXIES": ""})

    assert settings.trusted_proxies == ()


def test_lists_in_file_are_arrays_of_strings(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'trusted_proxies = ["10.0.0.0/8", "fd00::/8"]\n')

    settings = load_settings(path, env={})

    assert settings.trusted_proxies == ("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize("value", ['"10.0.0.1"', "[1, 2]"])
def test_list_in_file_of_another_shape_is_refused(tmp_path: Path, value: str) -> None:
    path = write_toml(tmp_path, f"trusted_proxies = {value}\n")

    with pytest.raises(ConfigError, match=r"^setting trusted_proxies: must be a list"):
        load_settings(path, env={})


def test_district_code_written_as_a_number_in_file_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "district_code = 123456\n")

    with pytest.raises(ConfigError, match=r"^setting district_code: .*written as a string"):
        load_settings(path, env={})


# --- TLS ---------------------------------------------------------------------------------


def test_tls_is_enabled_when_both_files_exist(tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path)
    path = write_toml(tmp_path, f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')

    settings = load_settings(path, env={})

    assert (settings.tls_cert_file, settings.tls_key_file) == (cert, key)
    assert settings.tls_enabled is True


def test_tls_half_set_is_refused_naming_the_set_file(tmp_path: Path) -> None:
    cert, _ = tls_files(tmp_path)

    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MEDIATION_TLS_CERT_FILE": str(cert)})

    assert caught.value.setting == "tls_cert_file"
    assert str(caught.value) == (
        "setting tls_cert_file: needs tls_key_file as well; set both or neither "
        f"(got '{cert}' from MEDIATION_TLS_CERT_FILE)"
    )


def test_tls_key_without_certificate_is_refused(tmp_path: Path) -> None:
    _, key = tls_files(tmp_path)

    with pytest.raises(ConfigError, match=r"^setting tls_key_file: needs tls_cert_file"):
        load_settings(env={"MEDIATION_TLS_KEY_FILE": str(key)})


def test_tls_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    cert, _ = tls_files(tmp_path)
    path = write_toml(tmp_path, f'tls_cert_file = "{cert}"\ntls_key_file = "{tmp_path}/gone"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    assert str(caught.value) == (
        f"setting tls_key_file: must be an existing file (got '{tmp_path}/gone' from {path})"
    )


def test_empty_tls_variable_unsets_the_file_from_config(tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path)
    path = write_toml(tmp_path, f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')

    settings = load_settings(
        path, env={"MEDIATION_TLS_CERT_FILE": "", "MEDIATION_TLS_KEY_FILE": ""}
    )

    assert settings.tls_enabled is False


# --- secrets -----------------------------------------------------------------------------


def test_secret_is_hidden_in_repr_and_str_but_revealed_on_request() -> None:
    secret = Secret("hunter2")

    assert repr(secret) == "'********'"
    assert str(secret) == "********"
    assert f"{secret}" == "********"
    assert secret.reveal() == "hunter2"


def test_secret_compares_by_value_and_is_falsy_when_empty() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert not Secret("")
    assert Secret("a")
    assert repr(Secret("")) == "Secret(<empty>)"
    assert str(Secret("")) == ""


def test_settings_never_show_the_s3_secret_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 's3_secret_key = "from-the-file"\n')

    settings = load_settings(path, env={})

    assert settings.s3_secret_key.reveal() == "from-the-file"
    assert "s3_secret_key='********'" in repr(settings)
    assert "from-the-file" not in repr(settings)
    assert "from-the-file" not in str(settings)


def test_secret_from_environment_is_hidden() -> None:
    settings = load_settings(env={"MEDIATION_S3_SECRET_KEY": "from-the-env"})

    assert settings.s3_secret_key.reveal() == "from-the-env"
    assert "from-the-env" not in repr(settings)


def test_badly_typed_secret_in_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "s3_secret_key = 31415926\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})

    assert str(caught.value) == (
        f"setting s3_secret_key: must be a string (got '********' from {path})"
    )


# --- Settings itself ---------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_replace_returns_a_validated_copy() -> None:
    settings = Settings()

    shorter = settings.replace(ring_timeout_s=0.05, heartbeat_s=0.1)

    assert (shorter.ring_timeout_s, shorter.heartbeat_s) == (0.05, 0.1)
    assert settings.ring_timeout_s == 30


def test_replace_refuses_a_bad_value_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().replace(ring_timeout_s=0)

    assert caught.value.setting == "ring_timeout_s"
    assert str(caught.value) == (
        "setting ring_timeout_s: must be a number > 0 (got 0 from Settings.replace())"
    )


def test_constructor_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"^setting max_participants: .* \(got 2\)$"):
        Settings(max_participants=2)


def test_log_level_is_stored_in_upper_case() -> None:
    assert Settings(log_level="warning").log_level == "WARNING"


def test_config_error_message_is_one_line_naming_the_setting() -> None:
    err = ConfigError("port", "must be odd", got="a\nb", source="MEDIATION_PORT")

    assert str(err) == "setting port: must be odd (got 'a\\nb' from MEDIATION_PORT)"
    assert (err.setting, err.problem, err.got, err.source) == (
        "port",
        "must be odd",
        "a\nb",
        "MEDIATION_PORT",
    )


def test_every_setting_is_documented_for_operators() -> None:
    text = DOCS.read_text(encoding="utf-8")

    for field in dataclasses.fields(Settings):
        row = re.compile(rf"^\| `{field.name}` \| `MEDIATION_{field.name.upper()}` \|", re.M)
        assert row.search(text), f"{field.name} missing from {DOCS.name}"
