"""Use the corpus at a path, generating the demonstration corpus only where there is none to use.

    corpus = ensure_corpus("../data/demo-smoke", profile="smoke")          # generated (or reused)
    corpus = ensure_corpus("/data/MSP-Podcast", profile="paper")           # returned as it is, never written

What every page and command that takes a `corpus` does first. generate_corpus(reuse=True) alone refuses a
folder it did not write (a licensed copy); this chooses by what the path holds:

    absent, or an empty folder           generated (generate_corpus with reuse=True)
    a generated corpus (its corpus.json  reused when it matches the arguments, else regenerated, as
      names sercore's generator, or it     generate_corpus(reuse=True) does; an unfinished generation
      holds corpus.incomplete)             (corpus.incomplete) is replaced
    anything else                        read only: its layout is checked (sercore.data.corpus.detect_layout:
                                           MSP-Podcast, IEMOCAP or a CSV manifest) and the path returned;
                                           a folder of no known layout raises FileNotFoundError naming it

A variant the generator alone can make (`localized`, with segments.csv) cannot be asked of a licensed copy:
its path is returned all the same, and is_generated() tells the page which case it has.
"""

from __future__ import annotations

import json
from pathlib import Path

from sercore.data.corpus import INCOMPLETE, detect_layout
from sercore.data.synth import GENERATOR, generate_corpus


def is_generated(path) -> bool:
    """True when `path` is a folder this library's generator wrote (its corpus.json says so), finished or not."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return False
    if (path / INCOMPLETE).exists():
        return True
    try:
        return json.loads((path / "corpus.json").read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):  # no corpus.json, unreadable, or not a JSON object
        return False


def ensure_corpus(path, profile: str = "smoke", variant: str = "standard", layout: str = "msp-podcast",
                  seed: int = 0, **generate_options) -> Path:
    """The absolute path of a usable corpus at `path`: generated there when absent, empty or already a
    generated corpus (see the module docstring), otherwise left untouched after its layout is checked.
    `profile`, `variant`, `layout`, `seed` and `generate_options` (n_utterances, workers, progress) go to
    generate_corpus and are ignored for a corpus it did not write."""
    path = Path(path).expanduser()
    empty = path.is_dir() and not any(path.iterdir())
    if not path.exists() or empty or is_generated(path):
        return generate_corpus(path, profile=profile, variant=variant, layout=layout, seed=seed, reuse=True,
                               **generate_options)
    detect_layout(path)  # one line naming the path when it holds no corpus sercore can read
    return path.resolve()
