"""The settings' environment helpers: a bad value stops the start naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from annotator.settings import env_bool, env_float, env_int, env_list, env_path, env_str

REPO = Path(__file__).resolve().parents[2]
NAME = "TRAPWISE_TEST_SETTING"  # a variable nothing else reads


def _import_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh process (they are read at import) with ``env`` set."""
    return subprocess.run(
        [sys.executable, "-c", "import annotator.settings"],
        cwd=REPO,
        env={**os.environ, "TRAPWISE_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRAPWISE_CLAIM_SECONDS", "abc", "TRAPWISE_CLAIM_SECONDS must be an integer, got 'abc'"),
        ("TRAPWISE_LOGIN_FAILURES", "0", "TRAPWISE_LOGIN_FAILURES must be at least 1, got '0'"),
        ("TRAPWISE_TASK_REQUEUE_SECONDS", "soon", "TRAPWISE_TASK_REQUEUE_SECONDS must be a number"),
        ("TRAPWISE_WORKER_HEARTBEAT_SECONDS", "0", "must be at least 1, got '0'"),
        ("DEBUG", "maybe", "DEBUG must be one of 1/0, true/false, yes/no, on/off, got 'maybe'"),
        ("TRAPWISE_EMAIL_VERIFICATION", "always", "must be one of none, optional, mandatory"),
    ],
)
def test_a_bad_value_stops_the_import_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = _import_settings(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_good_values_import(tmp_path: Path) -> None:
    result = _import_settings(
        tmp_path, TRAPWISE_CLAIM_SECONDS="30", DEBUG="Off", TRAPWISE_LOGIN_LOCKOUT_MINUTES="2.5"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("heartbeat", "lost", "ok"),
    [("30", "300", True), ("30", "61", True), ("30", "60", False), ("10", "5", False)],
)
def test_a_worker_is_lost_only_after_more_than_two_heartbeats(
    tmp_path: Path, heartbeat: str, lost: str, ok: bool
) -> None:
    """One late beat must not make a living worker's task run twice at once."""
    result = _import_settings(
        tmp_path,
        TRAPWISE_WORKER_HEARTBEAT_SECONDS=heartbeat,
        TRAPWISE_WORKER_LOST_SECONDS=lost,
    )
    assert (result.returncode == 0) is ok, result.stderr
    if not ok:
        assert "TRAPWISE_WORKER_LOST_SECONDS must be more than twice" in result.stderr
        assert f"({heartbeat}), got {lost}" in result.stderr


def test_env_int(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_int(NAME, 7) == 7
    monkeypatch.setenv(NAME, " 42 ")
    assert env_int(NAME, 7, minimum=42) == 42
    for bad, why in (("abc", "an integer"), ("", "an integer"), ("1.5", "an integer")):
        monkeypatch.setenv(NAME, bad)
        with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be {why}, got {bad!r}"):
            env_int(NAME, 7)
    monkeypatch.setenv(NAME, "-1")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be at least 0, got '-1'"):
        env_int(NAME, 7, minimum=0)


def test_env_float(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_float(NAME, 1.5) == 1.5
    monkeypatch.setenv(NAME, "0.25")
    assert env_float(NAME, 1.5, minimum=0) == 0.25
    for bad in ("fast", "nan", "inf"):
        monkeypatch.setenv(NAME, bad)
        with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be a .*number, got '{bad}'"):
            env_float(NAME, 1.5)
    monkeypatch.setenv(NAME, "-0.5")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        env_float(NAME, 1.5, minimum=0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *((word, True) for word in ("1", "true", "TRUE", "Yes", "on", " on ")),
        *((word, False) for word in ("0", "false", "False", "NO", "off", "")),
    ],
)
def test_env_bool_words(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv(NAME, raw)
    assert env_bool(NAME, not expected) is expected


def test_env_bool_default_and_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_bool(NAME, True) is True and env_bool(NAME, False) is False
    monkeypatch.setenv(NAME, "2")
    with pytest.raises(ImproperlyConfigured, match=f"{NAME} must be one of .*, got '2'"):
        env_bool(NAME, False)


def test_env_list(monkeypatch: pytest.MonkeyPatch) -> None:
    default = ["a"]
    monkeypatch.delenv(NAME, raising=False)
    got = env_list(NAME, default)
    assert got == ["a"] and got is not default  # callers may append to it
    monkeypatch.setenv(NAME, " x.org, ,y.org ,")
    assert env_list(NAME, default) == ["x.org", "y.org"]
    monkeypatch.setenv(NAME, "")
    assert env_list(NAME, default) == []
    monkeypatch.setenv(NAME, f"/a{os.pathsep}/b")
    assert env_list(NAME, [], sep=os.pathsep) == ["/a", "/b"]


def test_env_str_and_env_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert env_str(NAME, "dflt") == "dflt"
    assert env_path(NAME, tmp_path / "x" / ".." / "y") == tmp_path.resolve() / "y"
    monkeypatch.setenv(NAME, "")
    assert env_str(NAME, "dflt") == ""  # set but empty stays empty, as os.environ.get gave
    monkeypatch.setenv(NAME, str(tmp_path / "z"))
    assert env_path(NAME, Path("/nowhere")) == tmp_path.resolve() / "z"


def _settings_values(tmp_path: Path, names: list[str], **env: str) -> list[str]:
    """The repr of each setting in ``names``, read in a fresh process with ``env`` set."""
    code = "import annotator.settings as s; " + "; ".join(f"print(repr(s.{n}))" for n in names)
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("EMAIL_", "TRAPWISE_OPEN_SIGNUP"))
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**clean, "TRAPWISE_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_mail_goes_to_the_console_unless_an_smtp_host_is_set(tmp_path: Path) -> None:
    names = ["EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "DEFAULT_FROM_EMAIL"]
    assert (
        _settings_values(tmp_path, names)[0] == "'django.core.mail.backends.console.EmailBackend'"
    )
    smtp = _settings_values(
        tmp_path,
        [*names, "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD", "TRAPWISE_OPEN_SIGNUP"],
        EMAIL_HOST="mail.example.org",
        EMAIL_PORT="465",
        EMAIL_USE_TLS="false",
        EMAIL_HOST_USER="trapwise",
        EMAIL_HOST_PASSWORD="from-the-environment",
        DEFAULT_FROM_EMAIL="traps@example.org",
        TRAPWISE_OPEN_SIGNUP="true",
    )
    assert smtp == [
        "'django.core.mail.backends.smtp.EmailBackend'",
        "'mail.example.org'",
        "465",
        "False",
        "'traps@example.org'",
        "'trapwise'",
        "'from-the-environment'",
        "True",
    ]


def test_sign_up_is_closed_by_default(tmp_path: Path) -> None:
    assert _settings_values(tmp_path, ["TRAPWISE_OPEN_SIGNUP"]) == ["False"]


def test_s3_storages_sign_with_signature_version_4(tmp_path: Path) -> None:
    """Regions opened since 2014 and MinIO accept only SigV4-signed URLs."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import annotator.settings as s; "
            "print(sorted({o['OPTIONS']['signature_version'] for k, o in s.STORAGES.items() "
            "if k in ('crops', 'data', 'exports')}))",
        ],
        cwd=REPO,
        env={
            **os.environ,
            "TRAPWISE_VAR_DIR": str(tmp_path),
            "TRAPWISE_STORAGE": "s3",
            "TRAPWISE_S3_BUCKET": "trapwise-test",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['s3v4']"
