"""Outbound → the text a channel sends: the catalogue entry in the variant that channel needs.

SMS gets the short ``sms`` variant with free-text parameters (a unit's answer, a reason) cut so
the whole message fits its two-segment budget; email gets the longer ``email`` variant and a
subject; WeChat gets ``text`` (its adapter builds template fields from the Outbound itself).
Webhook deliveries to government systems are JSON bodies built by the staff side, not text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from channels.base import Outbound, Purpose, RenderedMessage
from channels.sms.segments import fit_params
from conversation.catalogue import Catalogue

# Parameters that carry free text and may be shortened for SMS; ids and codes never are.
FREE_TEXT_PARAMS = (
    "answer",
    "resolution",
    "reason",
    "question",
    "text",
    "comment",
    "description",
    "summary",
    "unit",
)
SUBJECT_MAX = 78


class Renderer:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    def render(self, outbound: Outbound, channel: str) -> RenderedMessage:
        if outbound.purpose is Purpose.WEBHOOK:
            return RenderedMessage(text=outbound.params.get("body", ""))
        key, lang = outbound.key, outbound.language
        if channel == "sms":

            def sms(params: Mapping[str, str]) -> str:
                return self.catalogue.render(key, params, lang, "sms")

            return RenderedMessage(text=sms(fit_params(sms, outbound.params, FREE_TEXT_PARAMS)))
        if channel == "email":
            body = self.catalogue.render(key, outbound.params, lang, "email")
            # A bundle carries the rest of what one conversation turn said, as one mail.
            for part in json.loads(outbound.attrs.get("bundle") or "[]"):
                body += "\n\n" + self.catalogue.render(part["key"], part["params"], lang, "email")
            subject = self.catalogue.render(key, outbound.params, lang, "email_subject")
            subject = subject.strip().splitlines()[0] if subject.strip() else key
            if len(subject) > SUBJECT_MAX:
                subject = subject[: SUBJECT_MAX - 1] + "…"
            return RenderedMessage(text=body, subject=subject)
        return RenderedMessage(text=self.catalogue.render(key, outbound.params, lang, "text"))
