"""Form validation for a Rasa assistant: an account number, a phone, an address... read and
checked the way powerbot's own forms read them (``intents.slots``, ``intents.signals``,
``bot.dialogue.forms.fill_requested``).

The actions decide what is missing, one question at a time, as powerbot's flows do: an action
asks its question and opens a form on the one slot it asked (``requested_slot``); the form's
validation keeps only that slot required (``OneQuestion``), so the form ends once it is answered
and the starter project's rules hand back to the action (``action_resume``), which asks the
next thing or shows the draft for a yes.

Rasa fills the slot from the customer's answer (``from_text`` / ``from_entity``); the
``validate_<form>`` action returns the value as powerbot would keep it (an account number that
the core knows, the 11 digits of a mobile, the place an address names, the district as the
core names it, the hall or half day picked by its position in the list offered) or ``None``
with a word on why, and the form asks again.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from backend_client import CoreUnavailable, NotFound
from bot.rasa.base import CORE
from bot.rasa.identity import given_digits
from common.pii import mask_account
from intents.signals import address_text, looks_like_address
from intents.slots import account_number, choice, contact_name, mobile
from intents.slots import district as district_in

Slots = dict[str, Any]


class OneQuestion:
    """A form that asks only what the action asked (its ``requested_slot``)."""

    async def required_slots(self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> list[str]:
        asked = tracker.get_slot("requested_slot")
        return [asked] if asked in domain_slots else []


class AccountNumber:
    """An account number the core knows (10-13 digits, not a mobile)."""

    async def validate_account_number(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                                      domain: DomainDict) -> Slots:
        number = account_number(str(value or ""))
        if not number:
            dispatcher.utter_message(response="utter_ask_account_number")
            return {"account_number": None}
        try:
            await (await CORE.client()).get_account(number)
        except NotFound:
            dispatcher.utter_message(response="utter_account_not_found", account=mask_account(number))
            return {"account_number": None}
        except CoreUnavailable:
            dispatcher.utter_message(response="utter_busy")
            return {"account_number": None}
        return {"account_number": number, "account": mask_account(number)}


class ContactPhone:
    """A mainland mobile number ("138 0013 8000", "+8613800138000" → "13800138000")."""

    def validate_contact_phone(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                               domain: DomainDict) -> Slots:
        phone = mobile(str(value or ""))
        if not phone:
            dispatcher.utter_message(response="utter_invalid_phone")
            return {"contact_phone": None}
        return {"contact_phone": phone}


class Address:
    """A place: what reads like an address (a road, a number, a compound); a sentence, a
    number or a bare district is not one (the order needs the place itself)."""

    def validate_address(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                         domain: DomainDict) -> Slots:
        text = str(value or "").strip()
        if not looks_like_address(text):
            dispatcher.utter_message(response="utter_not_understood_slot")
            return {"address": None}
        place = address_text(text) or text
        return {"address": place, "district": district_in(place) or tracker.get_slot("district")}


class ValidateIdentityForm(OneQuestion, AccountNumber, FormValidationAction):
    def name(self) -> str:
        return "validate_identity_form"

    def validate_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Slots:
        """Only its form: 4 digits, or the whole mobile (checked whole); the check itself is
        ``action_verify_identity``'s, which counts the failures."""
        given = given_digits(value)
        if given is None:
            dispatcher.utter_message(response="utter_not_understood_slot")
        return {"last4": given}


class ValidateReportOutageForm(OneQuestion, Address, ContactPhone, FormValidationAction):
    def name(self) -> str:
        return "validate_report_outage_form"


class ValidateRepairRequestForm(OneQuestion, Address, ContactPhone, FormValidationAction):
    def name(self) -> str:
        return "validate_repair_request_form"


class ValidateApplicationForm(OneQuestion, Address, ContactPhone, FormValidationAction):
    def name(self) -> str:
        return "validate_application_form"


class ValidateComplaintForm(OneQuestion, ContactPhone, FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    def validate_description(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                             domain: DomainDict) -> Slots:
        text = str(value or "").strip()
        return {"description": text if len(text) >= 2 else None}


class ValidateOutageScheduleForm(OneQuestion, FormValidationAction):
    def name(self) -> str:
        return "validate_outage_schedule_form"

    def validate_district(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                          domain: DomainDict) -> Slots:
        named = district_in(str(value or ""))
        if not named:
            dispatcher.utter_message(response="utter_not_understood_slot")
        return {"district": named}


class ValidateBookAppointmentForm(OneQuestion, ContactPhone, FormValidationAction):
    """A hall and a half day are picked by their position in the list just offered."""

    def name(self) -> str:
        return "validate_book_appointment_form"

    @staticmethod
    def _picked(slot: str, value: Any, tracker: Tracker) -> float | None:
        options = (tracker.get_slot("offered") or {}).get(slot) or []
        k = choice(str(value or ""))
        if k is not None and 1 <= k <= len(options):
            return float(options[k - 1])
        return None

    def validate_hall_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Slots:
        return {"hall_id": self._picked("hall_id", value, tracker)}

    def validate_slot_id(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Slots:
        return {"slot_id": self._picked("slot_id", value, tracker)}

    def validate_contact_name(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: DomainDict) -> Slots:
        return {"contact_name": contact_name(str(value or "").strip())}


def registered() -> list[type[FormValidationAction]]:
    return [ValidateIdentityForm, ValidateReportOutageForm, ValidateRepairRequestForm, ValidateApplicationForm,
            ValidateComplaintForm, ValidateOutageScheduleForm, ValidateBookAppointmentForm]
