"""Small helpers shared by the reference-data scripts."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

# A JSON array that `json.dumps(indent=...)` spread over several lines and that
# holds only numbers. JSON strings never contain raw newlines, so this cannot
# match inside a string value.
_NUMBER_ARRAY = re.compile(r"\[\n\s*([-+0-9.eE,\s]+?)\n\s*\]")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj) -> None:
    """Pretty-print `obj`, but keep arrays of numbers on a single line."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    text = _NUMBER_ARRAY.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
