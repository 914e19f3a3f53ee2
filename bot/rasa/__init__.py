"""powerbot and Rasa: powerbot's 95598 business as custom actions of a Rasa assistant.

``bot.rasa.actions`` and ``bot.rasa.validation`` hold the actions and form validations (rasa-sdk,
the optional extra ``powerbot[rasa]``), ``bot.rasa.server`` the action server that
``powerbot rasa actions`` runs; ``examples/rasa/`` is the starter Rasa project that calls them.
Nothing here is imported by the gateway: without the extra, powerbot runs as before.
"""
