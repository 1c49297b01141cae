"""The `lhpipe` command as a user runs it: output shapes, exit codes, files written.

Most cases run in-process through `lhpipe.cli.main`; a few run the installed console script
in a subprocess, to cover the real entry point and what it imports.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lhpipe.cli import main
from lhpipe.commands.graph import run_graph

LHPIPE = Path(sys.executable).with_name("lhpipe")

CLEAN = """\
webhook signups {
  path = "/hooks/signup"
  auth = hmac { preset = github  secret = env("SIGNUP_SECRET") }
  topic = "signups"
}

pipeline welcome {
  from webhook signups
  run_wf "welcome" { id = str(value.user_id) }
}
"""

# One warning: the webhook accepts anyone.
WARNING = """\
webhook open_door {
  path = "/hooks/open"
  auth = none
  topic = "doors"
}

pipeline door_log {
  from webhook open_door
  to log
}
"""

# One error: `amount_cent` is not a field of Order.
ERROR = """\
schema Order {
  order_id: string
  amount_cents: long
}

pipeline big_orders {
  from topic "orders" { value = Order }
  where value.amount_cent > 100000
  to log
}
"""

UNFORMATTED = 'pipeline   p{from topic "t"\n   to log}\n'


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, text in [("clean", CLEAN), ("warning", WARNING), ("error", ERROR)]:
        path = tmp_path / f"{name}.lhp"
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    return paths


def lhpipe(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [str(LHPIPE), *args], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )


# --- lint ---------------------------------------------------------------------------------


def test_lint_clean_file_exits_0(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", str(files["clean"])]) == 0
    assert capsys.readouterr().out == "no problems in 1 file\n"


def test_lint_warning_passes_unless_strict(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lint", str(files["warning"])]) == 0
    out = capsys.readouterr().out
    assert f"{files['warning']}:3:" in out
    assert "warning[LHP302]" in out
    assert out.endswith("0 errors, 1 warning in 1 file\n")
    assert main(["lint", "--strict", str(files["warning"])]) == 1


def test_lint_error_text_format(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(files["error"])]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{files['error']}:8:")
    assert "error[LHP202]" in lines[0]
    assert "amount_cent" in lines[0]
    assert lines[1] == "  8 |   where value.amount_cent > 100000"
    assert lines[2].startswith("    |         ") and lines[2].strip(" |").startswith("^")
    assert lines[3] == "  hint: did you mean `amount_cents`?"
    assert lines[-1] == "1 error, 0 warnings in 1 file"


def test_lint_json_format(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(files["error"]), str(files["warning"])]
    assert main(["lint", "--format", "json", *paths]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [(r["file"], r["code"], r["severity"]) for r in records] == [
        (str(files["error"]), "LHP202", "error"),
        (str(files["warning"]), "LHP302", "warning"),
    ]
    for record in records:
        assert list(record) == [
            "file", "line", "col", "end_line", "end_col", "severity", "code", "message", "hint"
        ]  # fmt: skip
    assert records[0]["line"] == 8
    assert records[0]["hint"] == "did you mean `amount_cents`?"


def test_lint_github_format(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "github", str(files["error"])]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"::error file={files['error']},line=8,col=")
    assert ",title=LHP202::" in line
    assert "hint" not in line and "%0A" not in line  # the message alone (cli.md)


def test_lint_sarif_format(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "sarif", str(files["error"])]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] == "LHP202"
    assert result["level"] == "error"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 8


def test_lint_searches_folders_and_defaults_to_pipelines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pipelines" / "nested").mkdir(parents=True)
    (tmp_path / "pipelines" / "nested" / "a.lhp").write_text(CLEAN, encoding="utf-8")
    (tmp_path / "pipelines" / "notes.txt").write_text("not a pipeline", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["lint"]) == 0
    assert capsys.readouterr().out == "no problems in 1 file\n"


def test_lint_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(tmp_path / "nowhere.lhp")]) == 2
    assert "nowhere.lhp" in capsys.readouterr().err


def test_lint_without_pipelines_folder_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["lint"]) == 2
    assert "pipelines" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["lint", "fmt", "graph", "test"])
def test_a_file_that_is_not_utf8_exits_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.lhp"
    path.write_bytes("// caf\xe9\n".encode("latin-1"))
    assert main([command, str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"lhpipe {command}: a file is not UTF-8 text: ")


def test_lint_bad_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "xml"]) == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


# --- fmt ----------------------------------------------------------------------------------


def test_fmt_check_reports_and_fmt_rewrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.lhp"
    path.write_text(UNFORMATTED, encoding="utf-8")
    assert main(["fmt", "--check", str(path)]) == 1
    assert capsys.readouterr().out == f"would reformat {path}\n"
    assert path.read_text(encoding="utf-8") == UNFORMATTED

    assert main(["fmt", str(path)]) == 0
    assert capsys.readouterr().out == f"reformatted {path}\n"
    formatted = path.read_text(encoding="utf-8")
    assert formatted != UNFORMATTED
    assert main(["fmt", "--check", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == formatted


def test_fmt_leaves_a_file_with_syntax_errors_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.lhp"
    path.write_text("pipeline p {\n  from topic\n", encoding="utf-8")
    assert main(["fmt", str(path)]) == 1
    assert "error[LHP0" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == "pipeline p {\n  from topic\n"


def test_fmt_missing_path_exits_2(tmp_path: Path) -> None:
    assert main(["fmt", str(tmp_path / "nowhere")]) == 2


# --- graph --------------------------------------------------------------------------------


def test_graph_dot_to_stdout(files: dict[str, Path]) -> None:
    out = io.BytesIO()
    assert run_graph([str(files["clean"])], stdout=out, stderr=io.StringIO()) == 0
    dot = out.getvalue().decode()
    assert dot.startswith("digraph lhpipe {")
    assert '"webhook:signups" -> "topic:signups"' in dot


def test_graph_formats_through_the_console_script(files: dict[str, Path], tmp_path: Path) -> None:
    clean = str(files["clean"])
    mermaid = lhpipe("graph", "--format", "mermaid", clean)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")

    svg = tmp_path / "graph.svg"
    result = lhpipe("graph", "--format", "svg", "-o", str(svg), clean)
    assert result.returncode == 0, result.stderr
    assert b"<svg" in svg.read_bytes()

    png = subprocess.run(
        [str(LHPIPE), "graph", "--format", "png", clean], capture_output=True, check=False
    )
    assert png.returncode == 0, png.stderr
    assert png.stdout.startswith(b"\x89PNG\r\n\x1a\n")

    data = json.loads(lhpipe("graph", "--format", "json", clean).stdout)
    assert set(data) == {"graph", "pipelines", "routes"}
    assert data["pipelines"]["welcome"]["source"]["webhook"] == "signups"


def test_graph_with_errors_prints_diagnostics_and_exits_1(files: dict[str, Path]) -> None:
    result = lhpipe("graph", str(files["error"]))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error[LHP202]" in result.stderr


# --- test, run, and the entry point -------------------------------------------------------


def test_run_hands_watch_and_port_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    import lhpipe.commands.run

    calls: list[tuple[list[str], dict[str, object]]] = []

    def fake_run_engine(paths: list[str], **options: object) -> int:
        calls.append((list(paths), options))
        return 0

    monkeypatch.setattr(lhpipe.commands.run, "run_engine", fake_run_engine)
    assert main(["run", "here/", "--watch", "--port", "9000"]) == 0
    assert main(["run", "here/"]) == 0
    assert calls == [
        (["here/"], {"port": 9000, "watch": True}),
        (["here/"], {"port": 8080, "watch": False}),
    ]


def test_console_script_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    assert lhpipe("lint", str(files["clean"])).returncode == 0
    assert lhpipe("lint", str(files["error"])).returncode == 1
    assert lhpipe("lint", "--strict", str(files["warning"])).returncode == 1
    missing = lhpipe("lint", str(tmp_path / "missing"))
    assert missing.returncode == 2
    assert "missing" in missing.stderr
    assert lhpipe("lint", "--no-such-flag").returncode == 2


def test_lint_does_not_import_kafka_or_littlehorse(files: dict[str, Path]) -> None:
    probe = (
        "import sys\n"
        "from lhpipe.cli import main\n"
        f"main(['lint', {str(files['error'])!r}])\n"
        "heavy = ('confluent_kafka', 'littlehorse', 'grpc', 'fastavro')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines()[-1] == "[]"


def test_graph_to_an_unwritable_file_exits_2(files: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "graph.dot"
    err = io.StringIO()
    assert run_graph([str(files["clean"])], output=str(target), stderr=err) == 2
    assert "cannot write" in err.getvalue()
