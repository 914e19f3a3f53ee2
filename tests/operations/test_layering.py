"""Which package may import which: read from the source with ``ast``, so an import inside a
function counts as much as one at the top of a module.

The reference core is a separate service a real marketing system can replace, so it imports
nothing from the gateway; ``common`` is the neutral floor both stand on; the dialogue engine
decides a turn and knows channels only through their contracts (``channels.base``). A channel
knows the bot only through the same contracts (the callbacks of ``ChannelContext``), never its
modules or tables; online payment is a package of its own (``payments``), not a channel.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Every module ``path`` (the module named ``module``) imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module or _module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``pkg.name`` whether ``name`` is a module or an attribute: either lies within ``pkg``
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations_in(path: Path, module: str | None, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    shown = path.relative_to(ROOT) if module is None else path.name
    return [f"{shown} imports {name}" for name in sorted(imports_of(path, module))
            if any(_within(name, f) for f in forbidden) and not any(_within(name, a) for a in allowed)]


def violations(folder: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return [v for path in sorted((ROOT / folder).rglob("*.py")) for v in violations_in(path, None, forbidden, allowed)]


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    source = tmp_path / "flows.py"
    source.write_text("import json\nfrom . import store\nfrom ..pipeline import run\nfrom channels import base\n\n"
                      "def later():\n    from channels import sms\n", encoding="utf-8")
    found = imports_of(source, "bot.dialogue.flows")
    assert found == {"json", "bot.dialogue.store", "bot.pipeline.run", "channels.base", "channels.sms"}
    assert violations_in(source, "bot.dialogue.flows", ("channels",), ("channels.base",)) == [
        f"{source.name} imports channels.sms"]


def test_core_imports_nothing_from_the_gateway() -> None:
    assert violations("core", ("bot", "channels", "intents", "backend_client")) == []


def test_common_imports_neither_side() -> None:
    assert violations("common", ("bot", "channels", "intents", "backend_client", "core")) == []


def test_dialogue_knows_channels_only_by_their_contracts() -> None:
    assert violations("bot/dialogue", ("channels",), allowed=("channels.base",)) == []


# Every Python file of the project (the virtualenv and other generated trees left out).
_PROJECT = ("bot", "channels", "payments", "common", "core", "intents", "backend_client", "tests", "benchmarks")


def test_channels_import_nothing_from_the_bot() -> None:
    """Not even under ``TYPE_CHECKING``: what a channel needs of the bot is a ``channels.base``
    contract; the core is reached through ``backend_client``; payments are handed in."""
    assert violations("channels", ("bot", "payments", "intents", "core")) == []


def test_the_channel_check_sees_a_type_only_import(tmp_path: Path) -> None:
    source = tmp_path / "fax.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.settings import Settings\n",
                      encoding="utf-8")
    assert violations_in(source, "channels.fax", ("bot",)) == ["fax.py imports bot.settings.Settings"]


def test_retention_does_not_import_channels() -> None:
    """Each table's owner declares its purge; the retention run imports none of them."""
    assert violations_in(ROOT / "bot" / "retention.py", None, ("channels",)) == []


def test_payments_are_not_a_channel() -> None:
    assert not (ROOT / "channels" / "alipay_payments.py").exists()
    assert (ROOT / "payments" / "alipay.py").exists()
    found = [v for folder in _PROJECT for v in violations(folder, ("channels.alipay_payments",))]
    assert found == []
