"""An OutboundMessage as the sender sees it: what to send, and the template to fall back on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.whatsapp.errors import PermanentSendError

MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_TEXT = 4096
MAX_BUTTON_ID = 256  # the Cloud API's limit on a reply button's id


@dataclass(frozen=True)
class Outbound:
    """One message to send; ``template`` is used outside the 24 h window or when there is no text."""

    message_key: str
    to: str
    to_hash: str
    text: str | None
    buttons: tuple[str, ...]
    template: str | None
    language: str
    params: tuple[str, ...]
    reason: str
    # What each button sends back when pressed; empty: its title.
    button_ids: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any], fallback_template: str | None = None) -> Outbound:
        """Build from a decoded OutboundMessage; text without a template falls back to the given one."""
        text = record.get("text") or None
        return cls(
            message_key=record["message_key"],
            to=record["to"],
            to_hash=record["to_hash"],
            text=text,
            buttons=tuple(record.get("buttons") or ()),
            template=record.get("template") or (fallback_template if text else None),
            language=record.get("language") or "pt_BR",
            params=tuple(record.get("params") or ()),
            reason=record.get("reason") or "",
            button_ids=tuple(record.get("button_ids") or ()),
        )

    def check(self) -> None:
        """Raise PermanentSendError for a message no provider could ever accept."""
        if self.text is None and self.template is None:
            raise PermanentSendError("message has neither text nor template", title="no_content")
        if not self.to.startswith("+") or not self.to[1:].isdigit() or not 8 <= len(self.to) <= 16:
            raise PermanentSendError("recipient is not an E.164 number", title="bad_recipient")
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise PermanentSendError(f"text longer than {MAX_TEXT} characters", title="text_too_long")
        if len(self.buttons) > MAX_BUTTONS or any(not 0 < len(b) <= MAX_BUTTON_TITLE for b in self.buttons):
            raise PermanentSendError(
                f"at most {MAX_BUTTONS} buttons of 1 to {MAX_BUTTON_TITLE} characters", title="bad_buttons"
            )
        if self.button_ids and (
            len(self.button_ids) != len(self.buttons)
            or any(not 0 < len(i) <= MAX_BUTTON_ID for i in self.button_ids)
        ):
            raise PermanentSendError(
                f"one button id of 1 to {MAX_BUTTON_ID} characters per button", title="bad_buttons"
            )

    def button_payloads(self) -> tuple[str, ...]:
        """Return what each button sends back when pressed: its id, else its title."""
        return self.button_ids or self.buttons

    def can_fall_back(self, as_template: bool) -> bool:
        """Tell whether a closed window can still be met by sending the template instead."""
        return not as_template and self.template is not None

    def starts_as_template(self) -> bool:
        """Tell whether the first attempt sends the template (there is no free-form text)."""
        return self.text is None
