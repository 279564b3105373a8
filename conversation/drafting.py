"""Collecting a draft ticket: fill slots from what the citizen says, ask for one missing slot at
a time (e-mail: everything missing at once), confirm, and file.

A filled slot is never overwritten by a later message except by an explicit correction
("修改地址 …"); that is what "never loses what was said" means here.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from channels.base import MediaRef, Purpose
from conversation import extract as ex
from conversation.actions import NEW_TICKET_ID, CancelTimer, CreateTicket, LinkAddress, SetTimer, TicketDraft
from conversation.settings import SlotSpec
from conversation.state import FiledTicket, KnownLocation, Mode, SlotValue
from conversation.text import fold, meaningful_count, squash, tidy
from conversation.turn import Turn

REMINDER, EXPIRY = "draft_reminder", "draft_expiry"
# A WeChat LOCATION event older than this says little about where the problem is.
LOCATION_OFFER_MAX_AGE = timedelta(hours=2)
SKIP_WORDS = {"跳过", "不用", "无", "没有", "skip", "none", "no"}


def add_working_days(start: date, days: int) -> date:
    """``days`` working days (Monday–Friday) after ``start``; holidays come later."""
    current, left = start, days
    while left > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            left -= 1
    return current


def offered_location(turn: Turn) -> KnownLocation | None:
    loc = turn.state.last_location
    if loc is None or turn.ts - loc.at > LOCATION_OFFER_MAX_AGE.total_seconds():
        return None
    return loc


def start_draft(turn: Turn) -> None:
    s = turn.state.clear_draft()
    intake = "enterprise" if s.entry_point == "enterprise" else "citizen"
    s = replace(
        s,
        mode=Mode.COLLECTING,
        intake_type=intake,
        draft_id=turn.inbound.external_id[:40],
        draft_started=turn.ts,
    )
    sender = turn.inbound.sender
    if sender.startswith("tel:"):
        number = sender[4:]
        phone = number[3:] if number.startswith("+86") else number
        s = s.with_slot("phone", SlotValue(phone, "channel", turn.ts))
    turn.state = s


def missing(turn: Turn) -> list[SlotSpec]:
    filled = turn.state.filled()
    return [spec for spec in turn.form.slots if spec.required and spec.name not in filled]


def _fill(
    turn: Turn, name: str, value: str, source: str, lat: float | None = None, lon: float | None = None
) -> None:
    turn.state = turn.state.with_slot(name, SlotValue(value, source, turn.ts, lat, lon))


def answer_for(turn: Turn, spec: SlotSpec, text: str) -> str | None:
    """Read ``text`` as the answer to the slot asked: more lenient than free extraction."""
    settings, kind = turn.settings, spec.validator
    if kind == "phone":
        phones = ex.find_phones(text)
        return phones[0][0] if phones else None
    if kind == "category":
        return ex.pick_category(text, turn.settings.categories)
    if kind == "credit_code":
        codes, _ = ex.find_credit_codes(text)
        return codes[0] if codes else None
    if kind == "description":
        body = ex.strip_for_description(text)
        return (
            body[: settings.max_text_chars]
            if meaningful_count(body) >= settings.min_description_chars
            else None
        )
    if kind == "location":
        places = ex.find_locations(text)
        found = ex.labelled(text, "location") or (max(places, key=len) if places else None)
        body = tidy(ex.strip_for_description(text))
        return found or (body[:200] if meaningful_count(body) >= 2 else None)
    if kind == "company":
        body = tidy(text)
        return (
            ex.labelled(text, "company")
            or ex.find_company(text)
            or (body[:100] if meaningful_count(body) >= 2 else None)
        )
    if kind == "name":
        m = ex.NAME_RE.search(fold(text))
        body = tidy(text)
        return m.group(1) if m else (body[:30] if 2 <= meaningful_count(body) <= 30 else None)
    return None


def absorb(turn: Turn, text: str, media: tuple[MediaRef, ...] = ()) -> bool:
    """Fill every empty slot this message fills; return whether it answered the slot asked."""
    settings = turn.settings
    if turn.state.intake_type == "citizen" and "enterprise" in settings.forms and ex.wants_enterprise(text):
        turn.state = replace(turn.state, intake_type="enterprise")
    if media:
        turn.state = replace(turn.state, attachments=(*turn.state.attachments, *media))
    asked = turn.form.spec(turn.state.asking) if turn.state.asking else None
    answered = False
    if asked is not None and turn.state.slot(asked.name) is None:
        offer = offered_location(turn)
        if asked.validator == "location" and offer is not None and squash(text) == "1":
            _fill(turn, asked.name, offer.label, "location", offer.latitude, offer.longitude)
            return True
        value = answer_for(turn, asked, text)
        if value is not None and asked.validator == "name" and squash(text) in SKIP_WORDS:
            value = None
        if value is not None:
            _fill(turn, asked.name, value, "answer")
            answered = True
    found = ex.extract(text, settings.categories, settings.min_description_chars, settings.max_text_chars)
    for spec in turn.form.slots:
        value = found.values.get(spec.validator)
        if value and turn.state.slot(spec.name) is None:
            _fill(turn, spec.name, value, "message")
    return answered


def arm_timers(turn: Turn) -> None:
    payload = {"draft": turn.state.draft_id}
    turn.do(SetTimer(REMINDER, turn.now + turn.settings.draft_reminder_after, payload))
    turn.do(SetTimer(EXPIRY, turn.now + turn.settings.draft_expiry_after, payload))


def cancel_timers(turn: Turn) -> None:
    turn.do(CancelTimer(REMINDER))
    turn.do(CancelTimer(EXPIRY))


def category_menu(turn: Turn) -> str:
    return "\n".join(f"{i}. {c.label(turn.language)}" for i, c in enumerate(turn.settings.categories, 1))


def prompt(turn: Turn, spec: SlotSpec, invalid: bool = False) -> None:
    """Ask for one slot (again, with a hint, when ``invalid``)."""
    params: dict[str, str] = {}
    key = f"invalid_{spec.validator}" if invalid else spec.prompt
    if spec.validator == "category":
        params["menu"] = category_menu(turn)
    offer = offered_location(turn)
    if spec.validator == "location" and offer is not None and not invalid:
        key, params["location_label"] = "ask_location_offer", offer.label or "-"
    turn.say_params(key, params)


def next_step(turn: Turn) -> None:
    """After slots changed: ask the next missing slot, or confirm, or file."""
    todo = missing(turn)
    if turn.state.channel == "email" and todo:
        turn.state = replace(
            turn.state, mode=Mode.COLLECTING, asking=todo[0].name if len(todo) == 1 else None
        )
        turn.say("email_missing_intro")
        for spec in todo:
            turn.say(f"missing_{spec.validator}", menu=category_menu(turn))
        return
    if todo:
        if turn.state.asking != todo[0].name:
            turn.state = replace(turn.state, asking=todo[0].name, tries=0)
        turn.state = turn.state.evolve(mode=Mode.COLLECTING)
        prompt(turn, todo[0])
        return
    if turn.state.channel in turn.settings.confirm_channels:
        turn.state = replace(turn.state, mode=Mode.CONFIRMING, asking=None, tries=0)
        show_summary(turn)
    else:
        file_ticket(turn)


def show_summary(turn: Turn) -> None:
    s = turn.state
    category = turn.settings.category(s.value("category"))
    params = {
        "description": s.value("description")[:300],
        "location": s.value("location"),
        "phone": s.value("phone"),
        "category": category.label(turn.language) if category else s.value("category"),
    }
    if s.intake_type == "enterprise":
        turn.say(
            "confirm_summary_enterprise",
            company=s.value("company"),
            credit_code=s.value("credit_code"),
            **params,
        )
    else:
        turn.say("confirm_summary", **params)


def collect(turn: Turn, text: str, media: tuple[MediaRef, ...] = ()) -> None:
    """One message while a draft is open."""
    before = turn.state.filled()
    asked_name = turn.state.asking
    answered = absorb(turn, text, media)
    progressed = answered or turn.state.filled() != before or bool(media)
    arm_timers(turn)
    if progressed or asked_name is None:
        next_step(turn)
        return
    spec = turn.form.spec(asked_name)
    tries = turn.state.tries + 1
    if tries >= turn.settings.max_tries:
        turn.state = replace(turn.state, tries=0)
        turn.say("handoff_offer")
        if spec is not None:
            prompt(turn, spec)
        return
    turn.state = replace(turn.state, tries=tries)
    if spec is not None:
        prompt(turn, spec, invalid=True)


def file_ticket(turn: Turn) -> None:
    s, settings, inbound = turn.state, turn.settings, turn.inbound
    location = s.slot("location")
    local_day = turn.now.astimezone(settings.tz).date()
    deadline = add_working_days(local_day, settings.reply_working_days)
    code = turn.context.new_query_code
    draft = TicketDraft(
        description=s.value("description"),
        location=s.value("location"),
        phone=s.value("phone"),
        category=s.value("category") or settings.categories[-1].name,
        intake_type=s.intake_type,
        name=s.value("name"),
        company=s.value("company"),
        credit_code=s.value("credit_code"),
        latitude=location.latitude if location else None,
        longitude=location.longitude if location else None,
        entry_point=s.entry_point or "",
        attachments=s.attachments,
        language=turn.language,
        query_code=code,
        reply_deadline=deadline,
        channel=inbound.channel,
        citizen=inbound.sender,
    )
    turn.do(CreateTicket(draft))
    phone = s.slot("phone")
    e164 = ex.phone_to_e164(phone.value) if phone else None
    if e164 and phone is not None and phone.source != "channel":
        turn.do(LinkAddress(f"tel:{e164}"))
    cancel_timers(turn)
    filed = FiledTicket(NEW_TICKET_ID, code, turn.ts)
    turn.state = replace(s.clear_draft(), tickets=(*s.tickets, filed)[-20:], current_ticket=NEW_TICKET_ID)
    params = {
        "ticket_id": NEW_TICKET_ID,
        "query_code": code,
        "days": str(settings.reply_working_days),
        "deadline": deadline.isoformat(),
    }
    turn.say_params("ticket_created", params, Purpose.TICKET_CREATED)
