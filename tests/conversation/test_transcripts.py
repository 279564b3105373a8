"""Every transcript in tests/conversation/transcripts/ runs through the engine (one test each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conversation.transcript_runner import run_transcript

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.toml"))


def test_enough_transcripts() -> None:
    assert len(TRANSCRIPTS) >= 60


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(path: Path) -> None:
    run_transcript(path)
