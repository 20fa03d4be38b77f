"""Character-level diff of two texts as HTML: what the representative lacks is <del>, what the member adds is <mark>."""

from __future__ import annotations

import difflib

from tunelab import safetext

# SequenceMatcher is quadratic in the worst case; duplicate texts longer than this are shown truncated.
MAX_DIFF_CHARS = 4000


def highlight_diff(representative: str | None, member: str | None) -> tuple[str, str]:
    old, new, _ = compare_texts(representative, member)
    return old, new


def compare_texts(representative: str | None, member: str | None) -> tuple[str, str, float]:
    """The representative with removed characters in <del>, the member with added ones in <mark>, and
    their character similarity in [0, 1] (difflib's ratio, shown next to the stage's own score).

    autojunk is off because it treats frequent characters (Korean particles, spaces) as junk in texts over
    200 characters and then reports whole sentences as changed.
    """
    left = (representative or "")[:MAX_DIFF_CHARS]
    right = (member or "")[:MAX_DIFF_CHARS]
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    left_parts: list[str] = []
    right_parts: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = safetext.text(left[i1:i2]), safetext.text(right[j1:j2])
        if op == "equal":
            left_parts.append(old)
            right_parts.append(new)
            continue
        if old:
            left_parts.append(f"<del>{old}</del>")
        if new:
            right_parts.append(f"<mark>{new}</mark>")
    return "".join(left_parts), "".join(right_parts), matcher.ratio()
