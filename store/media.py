"""The media store: photos, voice notes and attachments live on disk, never in Redis.

Tickets hold :class:`~channels.base.MediaRef` references only. The local backend stores each item
content-addressed (sha256 of the bytes) under ``<data dir>/media/ab/cd/<sha256>``, with a sidecar
JSON recording the content type, size and original file name; saving the same bytes twice keeps
one file. Limits: a size per item, and a total per ticket checked with :meth:`check_ticket_total`
before references are attached. Writes are atomic (temp file + rename) so a crash leaves no
half-written item behind a valid name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal, Protocol

from channels.base import MediaRef

DEFAULT_MAX_ITEM = 20 * 1024 * 1024
DEFAULT_MAX_TICKET = 100 * 1024 * 1024
# Kept, but flagged for staff: executable or script content nobody should open blindly.
DANGEROUS_SUFFIXES = frozenset(
    {
        ".exe",
        ".bat",
        ".cmd",
        ".com",
        ".scr",
        ".msi",
        ".js",
        ".jse",
        ".vbs",
        ".vbe",
        ".ps1",
        ".jar",
        ".lnk",
        ".hta",
    }
)
_MEDIA_ID = re.compile(r"[0-9a-f]{64}")


class MediaError(Exception):
    """Base class of media store errors."""


class MediaTooLarge(MediaError):
    """An item over the per-item limit, or a ticket whose attachments would exceed its total."""

    def __init__(self, scope: Literal["item", "ticket"], size: int, limit: int) -> None:
        super().__init__(f"{scope} media size {size} exceeds the limit of {limit} bytes")
        self.scope = scope
        self.size = size
        self.limit = limit


class MediaNotFound(MediaError, KeyError):
    pass


class MediaStore(Protocol):
    async def save(self, data: bytes, content_type: str, filename: str = "") -> MediaRef: ...

    async def read(self, media_id: str) -> bytes: ...

    async def info(self, media_id: str) -> MediaRef: ...

    def check_ticket_total(self, existing: Iterable[MediaRef], adding: Iterable[MediaRef]) -> None: ...


def clean_filename(name: str) -> str:
    """The last path component only (either slash), no control characters, at most 200 chars."""
    base = PureWindowsPath(PurePosixPath(name).name).name
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:200]


class LocalMediaStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        max_item_bytes: int = DEFAULT_MAX_ITEM,
        max_ticket_bytes: int = DEFAULT_MAX_TICKET,
    ) -> None:
        self.root = Path(data_dir) / "media"
        self.max_item_bytes = max_item_bytes
        self.max_ticket_bytes = max_ticket_bytes
        self._made_dirs: set[Path] = set()

    def _path(self, media_id: str) -> Path:
        if not _MEDIA_ID.fullmatch(media_id):
            raise MediaNotFound(media_id)  # also refuses anything path-like
        return self.root / media_id[:2] / media_id[2:4] / media_id

    async def save(self, data: bytes, content_type: str, filename: str = "") -> MediaRef:
        if len(data) > self.max_item_bytes:
            raise MediaTooLarge("item", len(data), self.max_item_bytes)
        media_id = content_id(data)
        name = clean_filename(filename)
        flagged = Path(name).suffix.lower() in DANGEROUS_SUFFIXES
        meta = {
            "content_type": content_type or "application/octet-stream",
            "size": len(data),
            "filename": name,
            "flagged": flagged,
        }
        # In a thread: creating files can take a millisecond each on a busy disk, and the event
        # loop must not wait for it (the syscalls release the GIL).
        await asyncio.to_thread(self._write, media_id, data, meta)
        return MediaRef(media_id, str(meta["content_type"]), len(data), name, flagged)

    def _write(self, media_id: str, data: bytes, meta: dict[str, object]) -> None:
        path = self._path(media_id)
        if path.parent not in self._made_dirs:  # mkdir is a costly syscall even when it exists
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path.parent)
        if not path.exists():
            _atomic_write(path, data)
        sidecar = path.with_suffix(".json")
        if not sidecar.exists():  # the first name and type given win; the bytes are the same
            _atomic_write(sidecar, json.dumps(meta, ensure_ascii=False).encode())

    async def read(self, media_id: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(media_id).read_bytes)
        except FileNotFoundError:
            raise MediaNotFound(media_id) from None

    async def info(self, media_id: str) -> MediaRef:
        try:
            raw = await asyncio.to_thread(self._path(media_id).with_suffix(".json").read_bytes)
        except FileNotFoundError:
            raise MediaNotFound(media_id) from None
        meta = json.loads(raw)
        return MediaRef(
            media_id,
            str(meta["content_type"]),
            int(meta["size"]),
            str(meta.get("filename", "")),
            bool(meta.get("flagged", False)),
        )

    def path(self, media_id: str) -> Path:
        """The file, for streaming a download (the staff API's attachment route)."""
        p = self._path(media_id)
        if not p.exists():
            raise MediaNotFound(media_id)
        return p

    def check_ticket_total(self, existing: Iterable[MediaRef], adding: Iterable[MediaRef]) -> None:
        """Raise MediaTooLarge when ``adding`` would take the ticket over its total (items
        already attached are counted once, by media id)."""
        seen: dict[str, int] = {r.media_id: r.size for r in existing}
        for r in adding:
            seen.setdefault(r.media_id, r.size)
        total = sum(seen.values())
        if total > self.max_ticket_bytes:
            raise MediaTooLarge("ticket", total, self.max_ticket_bytes)


def content_id(data: bytes) -> str:
    """The media id of ``data`` (content-addressed): known before the bytes are on disk."""
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
