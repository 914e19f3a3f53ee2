"""The command line as an operator meets it: --version, the POWERBOT_* settings honoured by
`nlu` and `shell`, a busy port as one line, the NLU report (reference date carried by the test
file, confidence histogram, confused-with) and `make bench`'s runner."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POWERBOT = Path(sys.executable).with_name("powerbot")
TEST_FILE = ROOT / "tests" / "data" / "nlu_test.yml"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERBOT_") or k.startswith("POWERBOT_TEST_")}
    return {**env, "PYTHONIOENCODING": "utf-8", **extra}


def _powerbot(*args: str, cwd: Path, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(POWERBOT), *args], input=stdin, capture_output=True, text=True, cwd=cwd,
                          timeout=120, env=_env(**env))


def test_version() -> None:
    p = _powerbot("--version", cwd=ROOT)
    assert p.returncode == 0 and p.stdout.strip() == f"powerbot {version('powerbot')}"


@pytest.fixture
def busy_port():  # type: ignore[no-untyped-def]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command, setting", [
    (("serve",), "POWERBOT_PORT"),
    (("run",), "POWERBOT_PORT"),
    (("core", "serve"), "POWERBOT_CORE_PORT"),
])
def test_busy_port_is_one_line_and_exit_1(tmp_path: Path, busy_port: int, command: tuple[str, ...], setting: str) -> None:
    ports = {"POWERBOT_PORT": str(_free_port()), "POWERBOT_CORE_PORT": str(_free_port()), setting: str(busy_port)}
    p = _powerbot(*command, cwd=tmp_path, POWERBOT_HOST="127.0.0.1", POWERBOT_CORE_HOST="127.0.0.1",
                  POWERBOT_DATA_DIR=str(tmp_path / "var"), **ports)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr == f"powerbot: port {busy_port} on 127.0.0.1 is in use (set {setting})\n"
    assert "ready" not in p.stdout and "Traceback" not in p.stderr


def test_port_taken_after_the_check_is_still_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from common.listen import run_server

    def lost_race() -> None:
        raise OSError(errno.EADDRINUSE, "error while attempting to bind on address ('127.0.0.1', 8080): address in use")

    with pytest.raises(SystemExit) as exc:
        run_server(lost_race, ("127.0.0.1", _free_port(), "POWERBOT_PORT"))
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("powerbot: cannot listen on 127.0.0.1:") and "POWERBOT_PORT" in err

    def other_failure() -> None:  # not about listening: the traceback is the useful report
        raise PermissionError(errno.EACCES, "Permission denied: 'var/bot.db'")

    with pytest.raises(PermissionError):
        run_server(other_failure)


@pytest.mark.parametrize("env, url", [
    ({"POWERBOT_PORT": "9123"}, "http://127.0.0.1:9123"),
    ({"POWERBOT_HOST": "0.0.0.0", "POWERBOT_PORT": "9124"}, "http://127.0.0.1:9124"),
    ({"POWERBOT_PUBLIC_URL": "https://bot.example.cn/", "POWERBOT_PORT": "9125"}, "https://bot.example.cn"),
])
def test_shell_talks_to_the_configured_gateway(tmp_path: Path, env: dict[str, str], url: str) -> None:
    p = _powerbot("shell", cwd=tmp_path, stdin="/exit\n", **env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"powerbot shell — {url} as ")


def test_nlu_commands_honour_the_settings_and_the_test_file_reference_date(tmp_path: Path) -> None:
    models = tmp_path / "nlu-models"
    env = {"POWERBOT_NLU_MODEL_DIR": str(models), "POWERBOT_NLU_DATA_DIR": str(ROOT / "training_data")}
    p = _powerbot("nlu", "train", cwd=tmp_path, **env)
    assert p.returncode == 0, p.stderr
    assert (models / "nlu.pkl").exists() and not (tmp_path / "models").exists()

    p = _powerbot("nlu", "parse", "明天会停电吗", "--reference-date", "2024-11-20", cwd=tmp_path, **env)
    assert p.returncode == 0 and json.loads(p.stdout)["entities"][0]["value"] == "2024-11-21"
    assert not (tmp_path / "models").exists()  # the model of the settings was used, none trained here

    p = _powerbot("nlu", "test", str(TEST_FILE), "--report", str(tmp_path / "rep"), cwd=tmp_path, **env)
    assert p.returncode == 0, p.stderr
    assert f"reference date 2024-11-20 (from {TEST_FILE})" in p.stdout
    report = json.loads((tmp_path / "rep" / "intent_report.json").read_text(encoding="utf-8"))
    assert report["reference_date"] == "2024-11-20"
    assert report["entity_scores"]["date"]["exact_match"] >= 0.95 and report["entity_exact_match"] >= 0.95
    # Rasa's histogram: every prediction in one bin, right or wrong; text and JSON
    hist = report["confidence_histogram"]
    assert len(hist) == 10 and hist[0]["from"] == 0.0 and hist[-1]["to"] == 1.0
    assert sum(b["correct"] + b["wrong"] for b in hist) == report["macro avg"]["support"]
    assert "confidence histogram (# correct, x wrong):" in p.stdout and "0.9–1.0" in p.stdout
    intents = [k for k, v in report.items() if isinstance(v, dict) and "f1-score" in v and k != "macro avg"]
    assert intents and all("confused_with" in report[k] for k in intents)
    errors = json.loads((tmp_path / "rep" / "intent_errors.json").read_text(encoding="utf-8"))
    missed = next(e for e in errors if "predicted" in e and "intent" in e)
    assert report[missed["intent"]]["confused_with"][missed["predicted"]] >= 1
    assert "confused with (gold intent → predicted: count):" in p.stdout

    # the same file without its reference_date line: relative dates are read against today
    bare = tmp_path / "nlu_test_no_date.yml"
    bare.write_text("".join(line for line in TEST_FILE.read_text(encoding="utf-8").splitlines(keepends=True)
                            if not line.startswith("# reference_date:")), encoding="utf-8")
    p = _powerbot("nlu", "test", str(bare), "--report", str(tmp_path / "rep2"), cwd=tmp_path, **env)
    assert p.returncode == 0 and "reference date" not in p.stdout
    worse = json.loads((tmp_path / "rep2" / "intent_report.json").read_text(encoding="utf-8"))
    assert worse["entity_scores"]["date"]["exact_match"] < report["entity_scores"]["date"]["exact_match"]
    # an explicit --reference-date wins over the file's line
    p = _powerbot("nlu", "test", str(TEST_FILE), "--report", str(tmp_path / "rep3"), "--reference-date", "2024-12-01",
                  cwd=tmp_path, **env)
    assert "reference date 2024-12-01 (from --reference-date)" in p.stdout


def test_histogram_and_confused_with_figures(tmp_path: Path) -> None:
    from intents.evaluate import confidence_histogram, confused_with, format_histogram
    from intents.loader import declared_reference_date

    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "b", "c", "b", "a", "b"]
    conf = [0.95, 0.55, 0.0, 1.0, 0.31, 0.5]
    hist = confidence_histogram(gold, pred, conf)
    assert [(b["correct"], b["wrong"]) for b in hist if b["correct"] or b["wrong"]] == [(0, 1), (0, 1), (0, 2), (2, 0)]
    assert hist[9] == {"from": 0.9, "to": 1.0, "correct": 2, "wrong": 0}  # 1.0 falls in the last bin
    assert confused_with(gold, pred, "a") == {"b": 1, "c": 1} and confused_with(gold, pred, "b") == {"a": 1}
    text = format_histogram(hist).splitlines()
    assert text[0].startswith("confidence histogram") and text[-1].endswith("#" * 40)

    f = tmp_path / "t.yml"
    f.write_text('version: "3.1"\n# reference_date: 2025-02-03\nnlu: []\n', encoding="utf-8")
    assert declared_reference_date(f) == dt.date(2025, 2, 3)
    f.write_text('version: "3.1"\n# Reference date 2025-02-03, no key\nnlu: []\n', encoding="utf-8")
    assert declared_reference_date(f) is None
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.yml").write_text("# reference_date: 2025-02-03\n", encoding="utf-8")
    (tmp_path / "d" / "b.yml").write_text("# reference_date: 2025-02-04\n", encoding="utf-8")
    with pytest.raises(ValueError, match="more than one reference_date"):
        declared_reference_date(tmp_path / "d")


def test_bench_runner_passes_only_options_each_benchmark_has() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*_bench.py")}
    todo = run_all.benchmarks("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    assert {b.script for b in todo} == scripts  # every benchmark is run
    for b in todo:
        help_text = subprocess.run([sys.executable, str(ROOT / "benchmarks" / b.script), "--help"],
                                   capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
        for extra in (b.args, b.pg_args or (), b.sqlite_args or ()):
            for arg in extra:
                if arg.startswith("--"):
                    assert arg in help_text, f"{b.script} has no {arg}"
    listed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--list", "--no-pg"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert listed.returncode == 0
    assert "load      (skipped: needs PostgreSQL)" in listed.stdout and "--no-pg" in listed.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "nope"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr
