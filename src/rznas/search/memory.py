"""Bounded reflection memory: which advice notes go into the next mutation prompts.

The paper feeds reflection advice into later prompts without saying how much is kept.
rznas keeps at most ``recent + useful`` notes:

* the ``recent`` most recent notes (fresh advice about the current population), and
* the ``useful`` notes with the highest credit among the older ones, where a note earns
  one credit each time it was shown in a mutation prompt whose child was scored higher
  than its parent (advice that was followed by an improvement). Ties go to the newer note.

A note that leaves the recent window without being among the most useful can never
come back (credits only grow while a note is shown), so it is dropped: the memory stays
bounded. Everything here is a pure function of the sequence of add()/credit() calls,
so replaying the stored trials and reflections rebuilds it exactly on resume.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class Note:
    """One piece of reflection advice; ``id`` is the number of the trial it reflects on."""

    id: int
    text: str
    credit: int = 0


def clean_note(text: str, max_chars: int) -> str:
    """Collapse whitespace and cap the length of a reflection reply."""
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 3].rstrip() + "..."
    return text


class ReflectionMemory:
    """Most recent plus most useful reflection notes (see the module docstring)."""

    def __init__(self, recent: int = 3, useful: int = 2, max_chars: int = 400):
        if recent < 0 or useful < 0:
            raise ConfigError("reflection memory sizes must be >= 0")
        if max_chars < 20:
            raise ConfigError(f"reflection note length must be >= 20 characters, got {max_chars}")
        self.recent = recent
        self.useful = useful
        self.max_chars = max_chars
        self.notes: list[Note] = []  # chronological

    def add(self, note_id: int, text: str) -> Note | None:
        """Store a new note (cleaned and capped); empty advice is not stored."""
        text = clean_note(text, self.max_chars)
        if not text:
            return None
        note = Note(note_id, text)
        self.notes.append(note)
        self._prune()
        return note

    def shown(self) -> list[Note]:
        """The notes to put into the next mutation prompt, oldest first."""
        recent = self.notes[-self.recent :] if self.recent else []
        older = self.notes[: len(self.notes) - len(recent)]
        ranked = sorted(older, key=lambda n: (n.credit, n.id), reverse=True)[: self.useful]
        keep = {n.id for n in recent} | {n.id for n in ranked}
        return [n for n in self.notes if n.id in keep]

    def credit(self, shown_ids: tuple[int, ...] | list[int], improved: bool) -> None:
        """Give one credit to each shown note when the child beat its parent."""
        if not improved:
            return
        wanted = set(shown_ids)
        for note in self.notes:
            if note.id in wanted:
                note.credit += 1

    def _prune(self) -> None:
        keep = {n.id for n in self.shown()}
        self.notes = [n for n in self.notes if n.id in keep]
