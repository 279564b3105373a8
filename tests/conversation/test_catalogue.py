"""Every catalogue key renders in both languages and every variant; every key the engine and the
staff side use exists; SMS variants stay within two UCS-2 segments with realistic parameters."""

from __future__ import annotations

import pytest

from conversation.catalogue import SAMPLE_PARAMS, SMS_MAX_CHARS, VARIANTS, Catalogue, CatalogueError
from conversation.settings import VALIDATOR_NAMES, default_settings
from store.model import TicketStatus

CATALOGUE = Catalogue.load()
LANGS = ("zh-CN", "en")
KEYS = sorted(CATALOGUE.keys("zh-CN"))

# Keys named in code outside the catalogue: the engine's fixed keys and the staff side's pushes
# (gateway/staff/pushes.py docstring), plus the SMS adapter's flood notice.
FIXED_KEYS = {
    "confirm_summary",
    "confirm_summary_enterprise",
    "confirm_hint",
    "edit_which",
    "ticket_created",
    "supplement_added",
    "staff_answer_received",
    "nothing_to_correct",
    "draft_cancelled",
    "nothing_to_cancel",
    "draft_in_progress",
    "draft_reminder",
    "draft_expired",
    "handoff_offer",
    "handoff",
    "handoff_waiting",
    "resumed",
    "resumed_idle",
    "help",
    "welcome",
    "welcome_enterprise",
    "not_understood",
    "empty_message",
    "long_text_truncated",
    "flood_wait",
    "ticket_id_invalid",
    "status_not_found",
    "status_none",
    "status_list_header",
    "survey_thanks",
    "survey_thanks_low",
    "survey_comment_thanks",
    "survey_comment_skipped",
    "sms_opt_out",
    "sms_opt_in",
    "sms_help",
    "email_missing_intro",
    "email_auto_ack",
    "delivery_fallback",
    "ask_location_offer",
    "status.accepted",
    "status.assigned",
    "status.replied",
    "status.resolved",
    "status.redispatched",
    "status.rejected",
    "status.merged",
    "status.more_info",
    "ticket.created_offline",
    "survey.ask",
    "survey.reminder",
    "survey.closed_unrated",
}


def test_both_languages_have_the_same_keys_and_parameters() -> None:
    assert CATALOGUE.keys("zh-CN") == CATALOGUE.keys("en")
    for key in KEYS:
        assert CATALOGUE.params_of(key, "zh-CN") == CATALOGUE.params_of(key, "en"), key


def test_every_key_used_in_code_exists() -> None:
    dynamic = {f"{p}_{v}" for p in ("ask", "invalid", "missing", "corrected") for v in VALIDATOR_NAMES}
    dynamic |= {f"status_{s.value}" for s in TicketStatus}
    prompts = {spec.prompt for form in default_settings().forms.values() for spec in form.slots}
    missing = (FIXED_KEYS | dynamic | prompts) - CATALOGUE.keys("zh-CN")
    assert not missing, sorted(missing)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("lang", LANGS)
def test_renders_in_every_variant(key: str, lang: str) -> None:
    for variant in VARIANTS:
        text = CATALOGUE.render(key, SAMPLE_PARAMS, lang, variant)
        assert text.strip()
        assert "{" not in text and "}" not in text, (key, variant, text)
    sms = CATALOGUE.render(key, SAMPLE_PARAMS, lang, "sms")
    assert len(sms) <= SMS_MAX_CHARS, f"{lang}:{key} sms is {len(sms)} chars: {sms}"
    entry = CATALOGUE.entries[lang][key]
    assert "sms" in entry and "text" in entry, f"{lang}:{key} lacks a text or sms variant"
    if "wechat_title" in entry:
        assert len(CATALOGUE.render(key, SAMPLE_PARAMS, lang, "wechat_title")) <= 20


def test_missing_key_parameter_and_variant_are_clear_errors() -> None:
    with pytest.raises(CatalogueError, match="no key 'nope'"):
        CATALOGUE.render("nope", {}, "zh-CN")
    with pytest.raises(CatalogueError, match="needs parameter 'ticket_id'"):
        CATALOGUE.render("ticket_created", {"query_code": "1"}, "zh-CN")
    with pytest.raises(CatalogueError, match="unknown variant"):
        CATALOGUE.render("help", {}, "zh-CN", "fax")
    with pytest.raises(CatalogueError, match="language 'fr'"):
        CATALOGUE.render("help", {}, "fr")


def test_missing_variant_falls_back_to_text() -> None:
    assert "email" not in CATALOGUE.entries["zh-CN"]["help"]
    assert CATALOGUE.render("help", {}, "zh-CN", "email") == CATALOGUE.render("help", {}, "zh-CN", "text")
