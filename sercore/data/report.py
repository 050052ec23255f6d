"""What a corpus loader did with its input: rows kept, items repaired, items skipped, each by reason.

Loaders never drop anything silently and never stop a whole corpus for one bad file: every skipped or
repaired item is counted under a reason with a few example names, and `str(report)` is what the user
reads (the `corpus` command prints it). Each input a loader reads in full (a labels file, the audio
folder) is also accounted for as a whole: `account` records its total and how it divides (e.g. data
lines = kept + skipped + blank), counted separately, so a lost line shows as a sum that differs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

EXAMPLES_PER_REASON = 3


@dataclass
class LoadReport:
    corpus: str  # the layout: "msp-podcast", "iemocap", "manifest"
    root: str
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)

    def skip(self, reason: str, item: str) -> None:
        """Count one item left out of the table, under `reason`."""
        self.skipped[reason] += 1
        self._example(f"skipped: {reason}", item)

    def repair(self, reason: str, item: str) -> None:
        """Count one item kept after a documented repair (now or when its audio is read)."""
        self.repaired[reason] += 1
        self._example(f"repaired: {reason}", item)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def account(self, source: str, unit: str, total: int, parts: dict[str, int]) -> None:
        """Record how the `total` units of one input divide into `parts` (also as a note for the reader)."""
        self.accounts[source] = {"total": total, **parts}
        self.note(f"{source}: {total} {unit}: " + ", ".join(f"{count} {what}" for what, count in parts.items()))

    def _example(self, key: str, item: str) -> None:
        examples = self.examples.setdefault(key, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(str(item))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def n_repaired(self) -> int:
        return sum(self.repaired.values())

    def to_dict(self) -> dict:
        return {"corpus": self.corpus, "root": self.root, "kept": self.kept, "skipped": dict(self.skipped),
                "repaired": dict(self.repaired), "examples": self.examples, "notes": list(self.notes),
                "accounts": {source: dict(parts) for source, parts in self.accounts.items()}}

    def __str__(self) -> str:
        lines = [f"{self.corpus} corpus at {self.root}: {self.kept} utterances kept, "
                 f"{self.n_repaired} repaired, {self.n_skipped} skipped"]
        for title, counter in (("skipped", self.skipped), ("repaired", self.repaired)):
            for reason, count in sorted(counter.items(), key=lambda item: (-item[1], item[0])):
                examples = ", ".join(self.examples.get(f"{title}: {reason}", []))
                lines.append(f"  {title:8s} {count:6d}  {reason}" + (f"  (e.g. {examples})" if examples else ""))
        lines += [f"  note: {text}" for text in self.notes]
        return "\n".join(lines)
