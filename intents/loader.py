"""Reader for Rasa 3.x NLU YAML (the subset Rasa itself writes and reads).

Supports intents with ``examples: |`` blocks, inline entity annotations in both forms
(``[value](entity)`` / ``[value](entity:canonical)`` and ``[value]{"entity": ..., "value": ...}``),
synonyms, regexes and lookup tables.  Rasa's own readers are the reference, so anything this
module accepts must also be accepted by them (see tests/nlu/test_nlu_data.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Same grammar as rasa.shared.nlu.training_data.entities_parser.ENTITY_REGEX (3.x).
ENTITY_RE = re.compile(
    r"\[(?P<entity_text>[^\]]+?)\](\((?P<entity>[^:)]+?)(?:\:(?P<value>[^)]+))?\)"
    r"|\{(?P<entity_dict>[^}]+?)\})"
)


@dataclass
class Example:
    """One training/evaluation message with its gold intent and entities."""

    text: str
    intent: str
    entities: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class NLUData:
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # lower-cased variant -> canonical
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

    def merge(self, other: "NLUData") -> None:
        self.examples.extend(other.examples)
        self.synonyms.update(other.synonyms)
        for k, v in other.regexes.items():
            self.regexes.setdefault(k, []).extend(v)
        for k, v in other.lookups.items():
            self.lookups.setdefault(k, []).extend(v)


def parse_example(line: str) -> tuple[str, list[dict[str, Any]]]:
    """Strip annotations from one example line; return plain text and entity dicts."""
    entities: list[dict[str, Any]] = []
    out: list[str] = []
    pos = 0
    for m in ENTITY_RE.finditer(line):
        out.append(line[pos : m.start()])
        start = sum(len(p) for p in out)
        value_text = m.group("entity_text")
        if m.group("entity_dict"):
            try:
                spec = json.loads("{" + m.group("entity_dict") + "}")
            except json.JSONDecodeError:
                spec = {}
            name = spec.get("entity")
            value = spec.get("value", value_text)
        else:
            name = m.group("entity")
            value = m.group("value") or value_text
        out.append(value_text)
        if name:
            entities.append(
                {"entity": name, "value": value, "text": value_text, "start": start,
                 "end": start + len(value_text)}
            )
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), entities


def _block_lines(block: Any) -> list[str]:
    if isinstance(block, list):
        return [str(x) for x in block]
    lines = []
    for raw in str(block or "").splitlines():
        s = raw.strip()
        if s.startswith("- "):
            lines.append(s[2:].strip())
        elif s == "-":
            continue
    return lines


def load_nlu_file(path: str | Path) -> NLUData:
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data = NLUData()
    for item in doc.get("nlu") or []:
        if not isinstance(item, dict):
            continue
        lines = _block_lines(item.get("examples"))
        if "intent" in item:
            for line in lines:
                text, ents = parse_example(line)
                if text.strip():
                    data.examples.append(Example(text, str(item["intent"]), ents))
                    for e in ents:
                        if e["value"] != e["text"]:
                            data.synonyms[e["text"].lower()] = str(e["value"])
        elif "synonym" in item:
            for line in lines:
                data.synonyms[line.lower()] = str(item["synonym"])
        elif "regex" in item:
            data.regexes.setdefault(str(item["regex"]), []).extend(lines)
        elif "lookup" in item:
            data.lookups.setdefault(str(item["lookup"]), []).extend(lines)
    return data


def nlu_files(path: str | Path) -> list[Path]:
    """NLU files under a data dir (or the file itself); domain/stories/rules are skipped."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = []
    for f in sorted(p.rglob("*.y*ml")):
        try:
            doc = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            continue
        if isinstance(doc, dict) and "nlu" in doc:
            files.append(f)
    return files


_REFERENCE_DATE = re.compile(r"^#\s*reference_date:\s*(\d{4}-\d{2}-\d{2})\s*$", re.MULTILINE)


def declared_reference_date(path: str | Path) -> dt.date | None:
    """The day a test file's relative dates ("明天", "下个月") are written against, from a
    comment line ``# reference_date: YYYY-MM-DD`` (a comment, so Rasa reads the file as
    before). Each YAML file of a directory may declare one; they must agree. None if none."""
    p = Path(path)
    files = sorted(p.rglob("*.yml")) + sorted(p.rglob("*.yaml")) if p.is_dir() else [p]
    found = {m.group(1) for f in files for m in _REFERENCE_DATE.finditer(f.read_text(encoding="utf-8"))}
    if len(found) > 1:
        raise ValueError(f"{path}: more than one reference_date: {', '.join(sorted(found))}")
    return dt.date.fromisoformat(found.pop()) if found else None


def load_data(path: str | Path) -> NLUData:
    data = NLUData()
    for f in nlu_files(path):
        data.merge(load_nlu_file(f))
    return data


def data_hash(path: str | Path) -> str:
    """SHA-256 over the NLU files' bytes; decides whether a saved model is still current."""
    h = hashlib.sha256()
    for f in nlu_files(path):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()
