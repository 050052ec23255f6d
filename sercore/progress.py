"""Progress bars: on for people at a terminal or in Jupyter, off in pages the book driver executes."""

import os


def bar_disabled(progress: bool) -> bool:
    """tqdm's `disable` for a call that asked for `progress`; TQDM_DISABLE=1 (set by the book driver, where a
    bar would become hundreds of lines of a rendered page) turns every bar off."""
    return not progress or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
