"""Personal data and secrets never reach the log text."""

from __future__ import annotations

import json
import logging

from gateway.logs import MaskingJsonFormatter, mask_personal_data, request_id


def _format(msg: str, secrets: tuple[str, ...] = (), **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": msg, "levelno": 20, "levelname": "INFO", "name": "t", **extra})
    return json.loads(MaskingJsonFormatter(secrets).format(record))  # type: ignore[no-any-return]


def test_phone_numbers_are_masked_in_every_common_spelling() -> None:
    for raw in ("13812345678", "138-1234-5678", "138 1234 5678", "+8613812345678"):
        out = mask_personal_data(f"call {raw} now")
        assert "1234" not in out, raw
        assert "****" in out and "5678" in out


def test_openids_and_emails_are_masked() -> None:
    out = mask_personal_data("from oAbCdEfGhIjKlMnOpQrStUvWxYz01 and zhang.san@example.com")
    assert "oAbCdEfGhIjKlMnOpQrStUvWxYz01" not in out
    assert "zhang.san@" not in out and "example.com" in out


def test_masking_applies_to_extra_fields_and_request_id_is_included() -> None:
    token = request_id.set("req-1")
    try:
        line = _format("inbound", sender="tel:+8613812345678", secrets=("s3cret-token",), note="s3cret-token")
    finally:
        request_id.reset(token)
    text = json.dumps(line, ensure_ascii=False)
    assert "+8613812345678" not in text
    assert "s3cret-token" not in text and "[secret]" in text
    assert line["request_id"] == "req-1"


def test_ticket_ids_and_times_are_not_mistaken_for_phone_numbers() -> None:
    text = "ticket SN-261125-0042-7 at 2026-11-25T15:33:48"
    assert mask_personal_data(text) == text
