"""Resolving the services from Maven Central into the download cache.

Each service lands in `<downloads>/<service>-<version>/`: jars in `lib/` (a classpath), archives
unpacked into `dist/`. Maven does the resolving, from a throwaway POM listing the service's
artifacts (`dependency:copy-dependencies`); `~/.m2` is its own intermediate cache. A directory
counts only when its marker, written last, names exactly the artifacts versions.toml pins now:
anything else (an interrupted download, a changed pin) is removed and resolved again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

from lhpipe.stack.errors import StackError
from lhpipe.stack.java import Jdk
from lhpipe.stack.paths import downloads_dir
from lhpipe.stack.pins import MavenCoordinate, Pins, ServicePin

MARKER = ".lhpipe-complete"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2/"
PROBE_PATH = "org/apache/maven/plugins/maven-dependency-plugin/maven-metadata.xml"
MIN_FREE_BYTES = 2 * 1024**3
"""A cold cache takes about 1.3 GB (Maven's copy plus ours); refuse early below this much."""


def _fingerprint(pin: ServicePin) -> str:
    return json.dumps([str(a) for a in pin.artifacts])


def cached_home(pin: ServicePin) -> Path | None:
    """The service's cache directory if it is complete for the current pin, else None."""
    home = downloads_dir() / pin.cache_name
    marker = home / MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == _fingerprint(pin):
        return home
    return None


def _interactive() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def check_maven_available(jdk: Jdk) -> str:
    """The `mvn` executable, after making sure it runs and Maven Central answers (in seconds)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is not on PATH; the stack's services are resolved from Maven Central "
            "with it. Install Maven 3.6.3 or newer (Debian: apt-get install maven)."
        )
    central = os.environ.get("LHPIPE_MAVEN_CENTRAL_URL", MAVEN_CENTRAL)
    # A small file that certainly exists: some mirrors answer 404 for the repository root.
    probe = central.rstrip("/") + "/" + PROBE_PATH
    try:
        with urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=10):
            pass
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StackError(
            f"Maven Central ({central}) is not reachable: {reason}. The first `lhpipe stack up` "
            "downloads about 600 MB from it; check the network or proxy settings "
            "(or set LHPIPE_MAVEN_CENTRAL_URL to the mirror your Maven settings use)."
        ) from exc
    version = subprocess.run(
        [mvn, "--version"], env=_maven_env(jdk), capture_output=True, text=True, check=False
    )
    if version.returncode != 0:
        raise StackError(f"`mvn --version` failed:\n{version.stdout}{version.stderr}")
    return mvn


def check_free_disk(path: Path) -> None:
    """Refuse to start a cold download that cannot fit."""
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise StackError(
            f"only {free / 1024**3:.1f} GiB free under {path}; the stack's first download needs "
            f"about {MIN_FREE_BYTES / 1024**3:.0f} GiB (set LHPIPE_CACHE_DIR to another disk)."
        )


def _maven_env(jdk: Jdk) -> dict[str, str]:
    return {**os.environ, "JAVA_HOME": str(jdk.home)}


def _dependency_xml(coordinate: MavenCoordinate) -> str:
    fields = [
        f"<groupId>{escape(coordinate.group)}</groupId>",
        f"<artifactId>{escape(coordinate.artifact)}</artifactId>",
        f"<version>{escape(coordinate.version)}</version>",
        f"<type>{escape(coordinate.type)}</type>",
    ]
    if coordinate.classifier:
        fields.append(f"<classifier>{escape(coordinate.classifier)}</classifier>")
    if coordinate.is_archive:
        # A distribution is self-contained; its POM's dependencies are already inside it.
        fields.append(
            "<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId>"
            "</exclusion></exclusions>"
        )
    return "<dependency>" + "".join(fields) + "</dependency>"


def _throwaway_pom(pin: ServicePin) -> str:
    dependencies = "\n    ".join(_dependency_xml(a) for a in pin.artifacts)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>lhpipe.stack</groupId>
  <artifactId>resolve-{pin.name}</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    {dependencies}
  </dependencies>
</project>
"""


def _unpack_archives(lib: Path, dist: Path) -> None:
    for archive in sorted(lib.glob("*.tar.gz")):
        dist.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dist, filter="data")
        archive.unlink()
    # Keycloak's archive has one top-level folder (keycloak-<v>/), Apicurio's has none: hoist it.
    entries = list(dist.iterdir()) if dist.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir():
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(dist / child.name)
        inner.rmdir()
    if lib.is_dir() and not any(lib.iterdir()):
        lib.rmdir()


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def resolve(pin: ServicePin, pins: Pins, mvn: str, jdk: Jdk) -> Path:
    """Download `pin`'s artifacts with Maven into a fresh cache directory and mark it complete."""
    root = downloads_dir()
    home = root / pin.cache_name
    staging = root / f".{pin.cache_name}.partial-{os.getpid()}"
    for leftover in (home, staging):
        shutil.rmtree(leftover, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "pom.xml").write_text(_throwaway_pom(pin), encoding="utf-8")
    goal = (
        "org.apache.maven.plugins:maven-dependency-plugin:"
        f"{pins.dependency_plugin}:copy-dependencies"
    )
    command = [
        mvn,
        "-B",
        "-f",
        str(staging / "pom.xml"),
        goal,
        f"-DoutputDirectory={staging / 'lib'}",
        "-DincludeScope=runtime",
    ]
    interactive = _interactive()
    if not interactive:
        command.insert(1, "-q")
    print(f"resolving {pin.name} {pin.version} from Maven Central ...", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        command,
        env=_maven_env(jdk),
        cwd=staging,
        stdin=subprocess.DEVNULL,
        capture_output=not interactive,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = "" if interactive else (done.stdout + done.stderr)[-4000:]
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(f"Maven could not resolve {pin.name} {pin.version}:\n{output}")
    (staging / "pom.xml").unlink()
    _unpack_archives(staging / "lib", staging / "dist")
    size = _tree_size(staging)
    # The marker goes in last, then one rename publishes the whole directory at once.
    (staging / MARKER).write_text(_fingerprint(pin), encoding="utf-8")
    staging.rename(home)
    print(
        f"resolved {pin.name} {pin.version}: {size / 1024**2:.0f} MB "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return home
