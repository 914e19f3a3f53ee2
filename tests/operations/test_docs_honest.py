"""The README and the deployment guide name only things that exist, and name all settings.

Cheap checks that keep the documentation honest as the code moves:

* every ``POWERBOT_*`` variable named in README.md, docs/ or deploy/ is a setting (a name
  ending in ``_`` is a family, ``POWERBOT_WECHAT_*``: at least one setting must start with it);
* every setting is in the README's settings table (a setting nobody can find is a setting
  nobody can use);
* every ``benchmarks/<name>.py`` the documents name exists;
* every repository file they name in inline code (``bot/app.py``, ``tests/test_faults_*.py``)
  exists;
* every ``powerbot <command> [<subcommand>]`` they show exists in the CLI, and so does the
  command each systemd unit starts;
* every relative link resolves to a file.

The checks are functions of text, so ``test_checks_can_fail`` feeds them a document that
breaks each rule and asserts that each one complains.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from bot.cli import main as cli_main
from bot.settings import _TEST_ONLY, ENV_PREFIX, Settings
from core.settings import CoreSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _documents() -> dict[str, str]:
    paths = [README, *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "deploy").rglob("*"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths if p.is_file()}


def _setting_names() -> set[str]:
    fields = set(Settings.model_fields) | set(CoreSettings.model_fields)
    return {ENV_PREFIX + name.upper() for name in fields}


# ------------------------------------------------------------------------------ checks
_VAR = re.compile(r"\bPOWERBOT_[A-Z0-9_]*")


def unknown_variables(text: str, known: set[str]) -> set[str]:
    """``POWERBOT_*`` names in ``text`` that are no setting (nor a test-only variable)."""
    bad = set()
    for name in set(_VAR.findall(text)):
        if name.endswith("_"):  # a family (POWERBOT_WECHAT_*) or the prefix itself
            if not any(k.startswith(name) for k in known):
                bad.add(name + "*")
        elif name not in known and name not in _TEST_ONLY:
            bad.add(name)
    return bad


def settings_table(readme: str) -> str:
    """The README's "## Settings" section, up to the next heading of its level."""
    m = re.search(r"^## Settings\n(.*?)(?=^## )", readme, re.S | re.M)
    assert m, "README.md has no '## Settings' section"
    return m.group(1)


def undocumented_settings(readme: str, known: set[str]) -> set[str]:
    """Settings no row of the README's settings table names."""
    rows = "\n".join(line for line in settings_table(readme).splitlines() if line.startswith("|"))
    named = set(re.findall(r"`(POWERBOT_[A-Z0-9_]+)`", rows))
    return known - named


def missing_benchmarks(text: str, root: Path) -> set[str]:
    """``benchmarks/<name>.py`` (or a bare ``<name>_bench.py``) named in ``text`` but absent."""
    names = set(re.findall(r"benchmarks/([\w-]+\.py)", text)) | set(re.findall(r"`([\w-]+_bench\.py)", text))
    return {n for n in names if not (root / "benchmarks" / n).is_file()}


_INLINE = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
# `powerbot x y` at the start of inline code or of a shell line; `.../bin/powerbot x y` anywhere
_WORDS = r"((?:[ \t]+[a-z][a-z0-9-]*){1,2})"
_CMD_START = re.compile(r"^powerbot" + _WORDS)
_CMD_BIN = re.compile(r"bin/powerbot" + _WORDS)


def powerbot_commands(text: str) -> set[tuple[str, ...]]:
    """The command paths (``("db", "upgrade")``) the document shows as commands to type."""
    lines = list(_INLINE.findall(text))
    for block in _FENCE.findall(text):
        lines += [line.strip() for line in block.splitlines()]
    lines += [line for line in text.splitlines() if line.startswith("ExecStart=")]
    found = set()
    for line in lines:
        for m in [*_CMD_START.finditer(line), *_CMD_BIN.finditer(line)]:
            found.add(tuple(m.group(1).split()))
    return found


def unknown_commands(paths: set[tuple[str, ...]], cli: click.Group) -> set[str]:
    """Command paths the CLI does not have. A group's first word must be a command; a second
    word after a group must be its subcommand (after a plain command it is an argument)."""
    bad = set()
    for path in paths:
        cmd: click.Command | None = cli
        for word in path:
            if not isinstance(cmd, click.Group):
                break  # a plain command: the rest are its arguments
            cmd = cmd.commands.get(word)
            if cmd is None:
                bad.add("powerbot " + " ".join(path))
                break
    return bad


_REPO_FILE = re.compile(r"^[a-z_][\w.-]*(?:/[\w.*-]+)+\.(?:py|ya?ml|md|json|html|js|service|example|toml|txt)$")


def missing_files(text: str, root: Path) -> set[str]:
    """Repository paths (``core/work_calendar.py``; a ``*`` is a glob) named in inline code
    that match no file. Paths made at run time (``var/...``) and URLs are not of this shape."""
    named = {w for snippet in _INLINE.findall(text) for w in re.split(r"[\s(),]+", snippet) if _REPO_FILE.match(w)}
    return {w for w in named if not any(root.glob(w))}


def broken_links(text: str, base: Path) -> set[str]:
    """Relative markdown links ``[..](path)`` that name no file or directory."""
    bad = set()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (base / target.split("#", 1)[0]).exists():
            bad.add(target)
    return bad


# ------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    docs = _documents()
    assert "README.md" in docs and "docs/deploy.md" in docs
    return docs


def test_every_variable_named_is_a_setting(documents: dict[str, str]) -> None:
    known = _setting_names()
    bad = {f"{name}: {var}" for name, text in documents.items() for var in unknown_variables(text, known)}
    assert not bad, f"documents name settings that do not exist (bot/settings.py): {sorted(bad)}"


def test_every_setting_is_in_the_readme_table(documents: dict[str, str]) -> None:
    missing = undocumented_settings(documents["README.md"], _setting_names())
    assert not missing, f"settings missing from the README's settings table: {sorted(missing)}"


def test_every_benchmark_named_exists(documents: dict[str, str]) -> None:
    bad = {f"{name}: {b}" for name, text in documents.items() for b in missing_benchmarks(text, ROOT)}
    assert not bad, f"documents name benchmarks that do not exist: {sorted(bad)}"


def test_every_file_named_exists(documents: dict[str, str]) -> None:
    bad = {f"{name}: {f}" for name, text in documents.items() if name.endswith(".md") for f in missing_files(text, ROOT)}
    assert not bad, f"documents name files that do not exist: {sorted(bad)}"


def test_every_command_shown_exists(documents: dict[str, str]) -> None:
    shown = {name: powerbot_commands(text) for name, text in documents.items()}
    assert ("db", "upgrade") in shown["README.md"] and ("serve",) in shown["deploy/systemd/powerbot-gateway.service"]
    bad = {f"{name}: {c}" for name, paths in shown.items() for c in unknown_commands(paths, cli_main)}
    assert not bad, f"documents show powerbot commands that do not exist: {sorted(bad)}"


def test_links_resolve_and_the_guide_is_linked(documents: dict[str, str]) -> None:
    bad = {f"{name}: {t}" for name, text in documents.items() if name.endswith(".md")
           for t in broken_links(text, (ROOT / name).parent)}
    assert not bad, f"broken relative links: {sorted(bad)}"
    assert "(docs/deploy.md)" in documents["README.md"]


def test_checks_can_fail() -> None:
    """Each check complains about a document that breaks its rule."""
    known = _setting_names()
    bad_doc = (
        "## Settings\n\n| variable | default | meaning |\n|---|---|---|\n| `POWERBOT_HOST` | x | y |\n\n"
        "## Next\n\nSet `POWERBOT_NO_SUCH_SETTING` and `POWERBOT_NOPE_*`; run `benchmarks/no_such_bench.py`,\n"
        "`powerbot db frobnicate` and `powerbot frobnicate`; see [the guide](docs/nowhere.md).\n"
        "```sh\n/opt/powerbot/.venv/bin/powerbot nosuch --flag\n```\n"
    )
    assert unknown_variables(bad_doc, known) == {"POWERBOT_NO_SUCH_SETTING", "POWERBOT_NOPE_*"}
    assert "POWERBOT_PORT" in undocumented_settings(bad_doc, known)
    assert "POWERBOT_HOST" not in undocumented_settings(bad_doc, known)
    assert missing_benchmarks(bad_doc, ROOT) == {"no_such_bench.py"}
    assert unknown_commands(powerbot_commands(bad_doc), cli_main) == {
        "powerbot db frobnicate", "powerbot frobnicate", "powerbot nosuch"}
    assert broken_links(bad_doc, ROOT) == {"docs/nowhere.md"}
    assert missing_files("`core/no_such_file.yml`, `bot/app.py`, `tests/faults/test_faults_*.py`", ROOT) == {
        "core/no_such_file.yml"}
    # and the good forms pass
    good = "`powerbot db upgrade`, `powerbot serve --workers 4`, `powerbot agents add NAME`, `POWERBOT_WECHAT_*`"
    assert unknown_commands(powerbot_commands(good), cli_main) == set()
    assert unknown_variables(good, known) == set()
