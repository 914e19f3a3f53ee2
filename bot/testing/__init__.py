"""Conversation tests the way Rasa users write them (test stories / ``rasa test e2e``).

- ``bot.testing.spec``: the YAML format (``tests/conversations/README.md``), its loader and
  validation, and the placeholders resolved from the demo data;
- ``bot.testing.run``: runs conversations against the embedded default (a real core with demo
  data, a real gateway with the trained NLU, SQLite), the clock pinned, one conversation at a
  time, and compares each turn's replies and the core rows each conversation created;
- ``bot.testing.report``: pass rates, ``failed_conversations.yml`` and ``results.json``, the
  benchmark's figures;
- ``bot.testing.cli``: ``powerbot test conversations [FILES] --report DIR``.
"""
