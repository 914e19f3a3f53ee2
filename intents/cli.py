"""`powerbot nlu ...` commands: train, parse (single or stdin batch), test."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import click


def _ref(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from exc


def _dirs(data_dir: str | None, model_dir: str | None) -> tuple[str, str]:
    """The training data and model directories: the options when given, else the settings the
    gateway reads (POWERBOT_NLU_DATA_DIR, POWERBOT_NLU_MODEL_DIR, .env), else their defaults."""
    if data_dir is None or model_dir is None:
        try:
            from bot.settings import get_settings

            s = get_settings()
            defaults = (str(s.nlu_data_dir), str(s.nlu_model_dir))
        except Exception:  # noqa: BLE001 - `powerbot` itself reports broken settings; standalone: defaults
            defaults = ("training_data", "models")
        data_dir = data_dir if data_dir is not None else defaults[0]
        model_dir = model_dir if model_dir is not None else defaults[1]
    return data_dir, model_dir


_DATA_HELP = "Directory (or file) with Rasa NLU YAML [default: POWERBOT_NLU_DATA_DIR, training_data]."
_MODEL_HELP = "Model directory [default: POWERBOT_NLU_MODEL_DIR, models]."


@click.group()
def nlu() -> None:
    """Natural-language understanding: train, parse and evaluate."""


@nlu.command()
@click.option("--data", "data_dir", default=None, help=_DATA_HELP)
@click.option("--out", "model_dir", default=None, help=_MODEL_HELP)
@click.option("--force", is_flag=True, help="Retrain even if the training data is unchanged.")
def train(data_dir: str | None, model_dir: str | None, force: bool) -> None:
    """Train the NLU model (skipped when the training data has not changed)."""
    from .model import train_if_needed

    data_dir, model_dir = _dirs(data_dir, model_dir)

    t0 = time.perf_counter()
    state, trained = train_if_needed(data_dir, model_dir, force=force)
    m = state.metadata
    verb = "trained" if trained else "up to date (training data unchanged)"
    click.echo(f"NLU model {verb}: {Path(model_dir) / 'nlu.pkl'} — {m['n_examples']} examples, "
               f"{len(m['intents'])} intents, CV accuracy {m.get('cv_intent_accuracy')}, "
               f"fallback threshold {m['fallback_threshold']}, ambiguity {m['ambiguity_threshold']}"
               f" ({time.perf_counter() - t0:.1f}s)")


def _interpreter(model_dir: str, data_dir: str):
    from .model import Interpreter, train_if_needed, load, stored_hash
    from .loader import data_hash

    try:
        if Path(data_dir).exists() and stored_hash(model_dir) != data_hash(data_dir):
            # Stale (training data changed) or from an older format: retrain, don't serve it.
            return Interpreter(train_if_needed(data_dir, model_dir, force=True)[0])
        return Interpreter(load(model_dir))
    except Exception:  # missing, corrupt or from an incompatible version: train afresh
        state, _ = train_if_needed(data_dir, model_dir, force=True)
        return Interpreter(state)


@nlu.command()
@click.argument("text", required=False)
@click.option("--model", "model_dir", default=None, help=_MODEL_HELP)
@click.option("--data", "data_dir", default=None, help="Used to train when no model exists yet. " + _DATA_HELP)
@click.option("--reference-date", default=None, help="Resolve relative dates against YYYY-MM-DD.")
def parse(text: str | None, model_dir: str | None, data_dir: str | None, reference_date: str | None) -> None:
    """Parse TEXT, or every stdin line (one JSON object per line) when TEXT is omitted."""
    ref = _ref(reference_date)
    data_dir, model_dir = _dirs(data_dir, model_dir)
    interp = _interpreter(model_dir, data_dir)
    if text is not None:
        click.echo(json.dumps(interp.parse(text, ref), ensure_ascii=False))
        return
    stdin = click.get_text_stream("stdin", errors="replace")
    out = sys.stdout
    for line in stdin:
        line = line.rstrip("\r\n")
        try:
            res = interp.parse(line, ref)
        except Exception as exc:  # never break the stream for one bad line
            res = {"text": line, "intent": {"name": "nlu_fallback", "confidence": 0.0},
                   "entities": [], "intent_ranking": [], "error": type(exc).__name__}
        out.write(json.dumps(res, ensure_ascii=False) + "\n")
        out.flush()


@nlu.command()
@click.argument("file", type=click.Path(exists=True))
@click.option("--report", "report_dir", default="reports", show_default=True)
@click.option("--model", "model_dir", default=None, help=_MODEL_HELP)
@click.option("--data", "data_dir", default=None, help=_DATA_HELP)
@click.option("--cross-validation", "folds", type=int, default=0,
              help="Evaluate FILE with N-fold cross-validation instead of the trained model.")
@click.option("--reference-date", default=None,
              help="Resolve relative dates against YYYY-MM-DD [default: the file's '# reference_date:' line].")
def test(file: str, report_dir: str, model_dir: str | None, data_dir: str | None, folds: int,
         reference_date: str | None) -> None:
    """Evaluate on Rasa NLU YAML; writes intent_report.json (with the confidence histogram and
    what each intent is confused with), intent_errors.json and intent_confusion_matrix.png.

    Gold values of relative dates ("明天") assume a day: the file names it in a comment line
    ``# reference_date: YYYY-MM-DD`` (Rasa ignores comments); --reference-date overrides it."""
    from .evaluate import cross_validate, evaluate, format_histogram, write_report
    from .loader import declared_reference_date, load_data
    from .model import train_if_needed, Interpreter

    data_dir, model_dir = _dirs(data_dir, model_dir)
    ref = _ref(reference_date)
    source = "--reference-date"
    if ref is None:
        ref = declared_reference_date(file)
        source = f"{file}"
    if ref is not None:
        click.echo(f"reference date {ref.isoformat()} (from {source})")
    data = load_data(file)
    if folds:
        result = cross_validate(data, folds, ref)
        extra = {"cross_validation_folds": folds}
    else:
        state, _ = train_if_needed(data_dir, model_dir)
        interp = Interpreter(state)
        result = evaluate(data.examples, lambda t: interp.parse(t, ref))
        extra = {"model": {k: state.metadata.get(k) for k in
                           ("training_data_hash", "created_at", "fallback_threshold",
                            "ambiguity_threshold")}}
    if ref is not None:
        extra["reference_date"] = ref.isoformat()
    write_report(result, report_dir, extra)
    click.echo(f"intent accuracy {result['accuracy']:.4f} (n={result['n']}), "
               f"in-scope accuracy {result['in_scope_accuracy']}, "
               f"out-of-scope recall {result['out_of_scope_recall']}, "
               f"entity exact match {result['entity_exact_match']:.4f} → {report_dir}/")
    for name, s in result["entity_report"].items():
        click.echo(f"  {name:16s} exact={s['exact_match']} P={s['precision']} R={s['recall']} "
                   f"n={s['support']}")
    click.echo(format_histogram(result["confidence_histogram"]))
    confused = {k: v for k, v in result["intent_report"].items() if isinstance(v, dict) and v.get("confused_with")}
    if confused:
        click.echo("confused with (gold intent → predicted: count):")
        for name, r in sorted(confused.items()):
            click.echo(f"  {name:24s} " + ", ".join(f"{p}: {n}" for p, n in r["confused_with"].items()))


if __name__ == "__main__":
    nlu()
