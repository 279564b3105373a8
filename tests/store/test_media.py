"""The local media store: content addressing, sidecar metadata, limits, path safety."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from channels.base import MediaRef
from store.media import LocalMediaStore, MediaNotFound, MediaTooLarge


async def test_save_read_info(data_dir: Path) -> None:
    media = LocalMediaStore(data_dir)
    photo = b"\xff\xd8\xff" + b"x" * 1000
    ref = await media.save(photo, "image/jpeg", "C:\\Users\\li\\现场照片.jpg")
    assert ref.media_id == hashlib.sha256(photo).hexdigest()
    assert (ref.content_type, ref.size, ref.filename, ref.flagged) == (
        "image/jpeg",
        1003,
        "现场照片.jpg",
        False,
    )
    assert await media.read(ref.media_id) == photo
    assert await media.info(ref.media_id) == ref
    again = await media.save(photo, "image/jpeg", "other.jpg")
    assert again.media_id == ref.media_id
    files = sorted(p.name for p in (data_dir / "media").rglob("*") if p.is_file())
    assert files == [ref.media_id, f"{ref.media_id}.json"]  # one copy, no temp files left


async def test_dangerous_types_are_kept_but_flagged(data_dir: Path) -> None:
    ref = await LocalMediaStore(data_dir).save(b"MZ...", "application/octet-stream", "../../发票.EXE")
    assert ref.flagged and ref.filename == "发票.EXE"


async def test_item_limit(data_dir: Path) -> None:
    media = LocalMediaStore(data_dir, max_item_bytes=100)
    await media.save(b"a" * 100, "text/plain")
    with pytest.raises(MediaTooLarge) as err:
        await media.save(b"a" * 101, "text/plain")
    assert (err.value.scope, err.value.size, err.value.limit) == ("item", 101, 100)


def test_ticket_total_limit(data_dir: Path) -> None:
    media = LocalMediaStore(data_dir, max_ticket_bytes=1000)
    a, b, c = (MediaRef(ch * 64, "image/png", 400) for ch in "abc")
    media.check_ticket_total([a], [b, a])  # a counted once: 800
    with pytest.raises(MediaTooLarge) as err:
        media.check_ticket_total([a, b], [c])
    assert (err.value.scope, err.value.size) == ("ticket", 1200)


async def test_unknown_and_path_like_ids(data_dir: Path) -> None:
    media = LocalMediaStore(data_dir)
    for bad in ("0" * 64, "../../etc/passwd", "A" * 64):
        with pytest.raises(MediaNotFound):
            await media.read(bad)
