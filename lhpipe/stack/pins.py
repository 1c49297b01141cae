"""The pinned versions of the stack's services, read from `versions.toml` (the only place)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

SERVICE_ORDER = ("kafka", "littlehorse", "apicurio", "keycloak", "apicurio-secure", "connect")
"""Every service the stack knows, in start order; `down` stops them in reverse."""

DEFAULT_SERVICES = ("kafka", "littlehorse", "apicurio", "keycloak")
"""What `lhpipe stack up` starts without `--with`."""

OPTIONAL_SERVICES = ("connect",)

SECURE_SERVICES = ("apicurio-secure",)
"""What `lhpipe stack up --secure` starts besides the others: services whose every listener is
secured (a second Apicurio, requiring tokens over HTTPS)."""


@dataclass(frozen=True)
class MavenCoordinate:
    """One artifact, written `group:artifact:version[:type[:classifier]]` in versions.toml."""

    group: str
    artifact: str
    version: str
    type: str = "jar"
    classifier: str = ""

    @classmethod
    def parse(cls, text: str) -> MavenCoordinate:
        parts = text.split(":")
        if not 3 <= len(parts) <= 5:
            raise ValueError(f"not group:artifact:version[:type[:classifier]]: {text!r}")
        return cls(*parts)

    @property
    def is_archive(self) -> bool:
        """A distribution to unpack (Keycloak, Apicurio) rather than a jar for a classpath."""
        return self.type in ("tar.gz", "zip")

    def __str__(self) -> str:
        tail = f":{self.type}" + (f":{self.classifier}" if self.classifier else "")
        return f"{self.group}:{self.artifact}:{self.version}" + ("" if tail == ":jar" else tail)


@dataclass(frozen=True)
class ServicePin:
    """A service's pinned version, the Java release it needs and the artifacts that make it."""

    name: str
    version: str
    java: int
    artifacts: tuple[MavenCoordinate, ...]

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class Pins:
    """Everything versions.toml pins."""

    services: dict[str, ServicePin]
    dependency_plugin: str


def load_pins() -> Pins:
    """Read the packaged versions.toml."""
    text = resources.files("lhpipe.stack").joinpath("versions.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    services = {
        name: ServicePin(
            name=name,
            version=str(data[name]["version"]),
            java=int(data[name]["java"]),
            artifacts=tuple(MavenCoordinate.parse(a) for a in data[name]["artifacts"]),
        )
        for name in SERVICE_ORDER
        if name not in SECURE_SERVICES  # second instances of another's distribution
    }
    return Pins(services=services, dependency_plugin=str(data["maven"]["dependency_plugin"]))
