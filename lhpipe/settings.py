"""Connection settings: the environment, then an ``lhpipe.toml`` beside the pipelines, then the
local stack's defaults — so ``lhpipe run`` works against ``lhpipe stack up`` with no settings.

LittleHorse settings keep LittleHorse's own names (``LHC_API_HOST``, ``LHC_API_PORT``,
``LHC_API_PROTOCOL``, ``LHC_TENANT_ID``, ``LHC_OAUTH_*``...) and are handed to
``littlehorse.config.LHConfig`` unchanged. ``lhpipe.toml`` uses the same names as keys::

    KAFKA_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
    LHPIPE_REGISTRY_URL = "http://127.0.0.1:8081/apis/ccompat/v7"
    LHC_API_HOST = "127.0.0.1"

An environment variable wins over the file, the file over the default. Any setting ``NAME`` may
instead be given as ``NAME_FILE``: the path of a file that holds its value (one trailing newline
dropped), as container platforms mount secrets; ``NAME`` itself, where set, wins.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lhpipe.check.program import Text

SETTINGS_FILE = "lhpipe.toml"
#: HTTPS for lhpipe's own HTTP port (``lhpipe run --tls-cert/--tls-key``): PEM files.
TLS_CERT_SETTING = "LHPIPE_TLS_CERT"
TLS_KEY_SETTING = "LHPIPE_TLS_KEY"
#: ``NAME_FILE`` holds the path of a file with the value of ``NAME``.
FILE_SUFFIX = "_FILE"
#: A secret file larger than this is not a secret: refused rather than read.
MAX_SECRET_FILE_BYTES = 1 << 20

DEFAULTS: Mapping[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "LHPIPE_REGISTRY_URL": "http://127.0.0.1:8081/apis/ccompat/v7",
    "LHPIPE_CONNECT_URL": "http://127.0.0.1:8083",
    "LHC_API_HOST": "127.0.0.1",
    "LHC_API_PORT": "2023",
    "LHC_API_PROTOCOL": "PLAINTEXT",
    "LHC_TENANT_ID": "default",
}


class SettingsError(Exception):
    """An ``lhpipe.toml`` that cannot be read or has a value that is not a scalar."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Resolved settings; :meth:`get` looks a name up in environment, file, defaults."""

    environ: Mapping[str, str]
    file_values: Mapping[str, str] = field(default_factory=dict)
    file: Path | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        if name in self.environ:
            return self.environ[name]
        if name in self.file_values:
            return self.file_values[name]
        path = self.environ.get(name + FILE_SUFFIX, self.file_values.get(name + FILE_SUFFIX))
        if path is not None:
            return _read_secret_file(name + FILE_SUFFIX, path)
        return DEFAULTS.get(name, default)

    def names(self, prefix: str) -> list[str]:
        """Every setting whose name starts with ``prefix``, given as itself or as
        ``NAME_FILE``, sorted."""
        found = set()
        for name in (*DEFAULTS, *self.file_values, *self.environ):
            if name.endswith(FILE_SUFFIX) and name[: -len(FILE_SUFFIX)].startswith(prefix):
                found.add(name[: -len(FILE_SUFFIX)])
            elif name.startswith(prefix):
                found.add(name)
        return sorted(found)

    def integer(
        self,
        name: str,
        default: int,
        *,
        minimum: int = 0,
        error: type[Exception] = SettingsError,
    ) -> int:
        """Setting ``name`` as a whole number of at least ``minimum`` (``default`` when unset);
        otherwise ``error`` with a message that names the setting."""
        text = self.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise error(f"{name} must be a whole number, not {text!r}") from None
        if value < minimum:
            floor = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise error(f"{name} {floor}, not {value}")
        return value

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise SettingsError(f"setting {name} is not set (environment or {SETTINGS_FILE})")
        return value

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.require("KAFKA_BOOTSTRAP_SERVERS")

    @property
    def registry_url(self) -> str:
        return self.require("LHPIPE_REGISTRY_URL")

    @property
    def connect_url(self) -> str:
        return self.require("LHPIPE_CONNECT_URL")

    def littlehorse(self) -> dict[str, str]:
        """Every ``LHC_*`` setting, for ``LHConfig`` (which reads them from the environment)."""
        return {n: v for n in self.names("LHC_") if (v := self.get(n)) is not None}


def _read_secret_file(setting: str, path: str) -> str:
    """The value in the file ``setting`` names; :class:`SettingsError` naming the setting and
    the path (never the contents) when it cannot be read."""
    from lhpipe.check.files import read_bytes

    try:
        data = read_bytes(path)  # a regular file only: a FIFO never hangs the read
    except OSError as exc:
        raise SettingsError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SettingsError(f"{setting}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{setting}: {path} is not UTF-8 text") from None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def find_settings_file(paths: list[Path]) -> Path | None:
    """The first ``lhpipe.toml`` beside one of ``paths`` (a folder, or a file's folder)."""
    for path in paths:
        folder = path if path.is_dir() else path.parent
        candidate = folder / SETTINGS_FILE
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    paths: list[Path] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings for a run over ``paths``; raises :class:`SettingsError` for a bad file."""
    env = dict(os.environ if environ is None else environ)
    file = find_settings_file(paths or [])
    values: dict[str, str] = {}
    if file is not None:
        try:
            from lhpipe.check.files import read_text

            raw = tomllib.loads(read_text(file))  # only a regular file: a FIFO never hangs
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"{file}: {exc}") from exc
        for name, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise SettingsError(f"{file}: {name} must be a string or a number")
            values[name] = str(value)
    return Settings(environ=env, file_values=values, file=file)


def resolve_text(
    value: Text,
    settings: Settings,
    what: str,
    error: Callable[[str], Exception] = SettingsError,
) -> str:
    """A literal as it is, or ``env("NAME", "default")`` read from ``settings`` now; an unset
    variable without a default raises ``error`` (each caller's own start-up error)."""
    if isinstance(value, str):
        return value
    resolved = settings.get(value.name, value.default)
    if resolved is None:
        raise error(f"{what}: env({value.name!r}) is not set")
    return resolved
