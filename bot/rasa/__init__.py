"""powerbot and Rasa, both ways round.

powerbot's 95598 business as custom actions of a Rasa assistant: ``bot.rasa.actions`` and
``bot.rasa.validation`` (rasa-sdk, the optional extra ``powerbot[rasa]``), served by the action
server in ``bot.rasa.server`` (``powerbot rasa actions``); ``examples/rasa/`` is the starter Rasa
project that calls them. powerbot in front of a Rasa assistant: ``bot.rasa.backend`` decides each
turn through Rasa's REST channel (``POWERBOT_DIALOGUE_BACKEND=rasa``; ``bot.rasa.replies`` maps
Rasa's answers to channel replies) and ``bot.rasa.parse`` serves powerbot's NLU as Rasa's
``/model/parse``. Only ``parse`` (no rasa-sdk) is imported by the default gateway.
"""
