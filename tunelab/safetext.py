"""Dataset text, predictions, labels and review comments are written by strangers: show them as text.

`html.escape` is not enough inside `st.markdown`: Markdown still reads `![x](http://…)` as an image the
browser fetches, `[x](…)` and bare URLs as links, `$…$` as math, `:red[…]` as a Streamlit directive, and a
blank line ends a surrounding HTML block so everything after it is parsed as Markdown again. So every ASCII
punctuation character becomes a numeric character reference (rendered as the same character, never as
syntax) and line breaks become `&#10;` (a `white-space: pre-wrap` box still shows them; the Markdown parser
never sees a blank line). Works the same in Markdown text, in raw HTML blocks, in captions and in alerts.
"""

from __future__ import annotations

import string
from typing import Any

_ENTITIES = {ord(c): f"&#{ord(c)};" for c in string.punctuation} | {
    ord("\n"): "&#10;",
    ord("\r"): "&#13;",
}


def text(value: Any, limit: int | None = None) -> str:
    """`value` as inert text for st.markdown / st.caption / alerts (None is the empty string)."""
    shown = "" if value is None else str(value)
    if limit is not None and len(shown) > limit:
        shown = shown[:limit] + " …"
    return shown.translate(_ENTITIES)
