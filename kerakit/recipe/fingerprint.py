"""Run identity: which sections decide what a backup holds, their hashes, and what changed.

A run folder records `fingerprint()` of its resolved recipe (run.json), and
each crash-safe backup records `content_hash()` of the same sections
(`recipe_hash` in ckpt-N.json, with the sections themselves). Resuming with a
recipe whose hashes differ is refused by `refuse_resume`, naming what changed
(`changes`). The two hash formats are those kerakit 0.1.0 wrote; both stay as
they are so that earlier run folders keep resuming.

    fingerprint(recipe)                      # '053f9111a2592e9e'
    changes(old["model"], new["model"])      # ['sequential[0].Dense.units']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from kerakit.errors import ResumeError

# What a backup must agree with to be resumed (not train: `--epochs` may grow a run).
RESUME_SECTIONS = ("data", "augment", "model", "compile")


def resume_parts(recipe: Mapping) -> dict:
    """The sections of a resolved recipe that a resumed run must share with its backup."""
    return {k: recipe.get(k) for k in RESUME_SECTIONS}


def fingerprint(recipe: Mapping, sections: Iterable[str] = RESUME_SECTIONS) -> str:
    """16 hex digits of SHA-256 over the given sections (run.json's `fingerprint`)."""
    part = {k: recipe.get(k) for k in sections}
    text = json.dumps(part, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(value: Any) -> str:
    """SHA-256 of plain values, independent of key order (a backup's `recipe_hash`)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changes(old: Any, new: Any, path: str = "", limit: int = 5) -> list[str]:
    """Key paths where two plain-value recipes differ ("model.sequential[2].Dense.units")."""
    out: list[str] = []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in new or key not in old:
                out.append(sub)
            else:
                out.extend(changes(old[key], new[key], sub, limit))
            if len(out) >= limit:
                break
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            out.extend(changes(a, b, f"{path}[{i}]", limit))
    elif old != new:
        out.append(path or "(whole recipe)")
    return out[:limit]


def changed_sections(old: Mapping, new: Mapping) -> list[str]:
    """The resume sections whose values differ between two plain-value recipes."""
    return [k for k in RESUME_SECTIONS if content_hash(old.get(k)) != content_hash(new.get(k))]


def refuse_resume(what: str, changed: list[str]) -> ResumeError:
    """The one refusal of a resume with a changed recipe: what, what changed, what to do."""
    detail = f" (changed: {', '.join(changed)})" if changed else ""
    return ResumeError(
        f"cannot resume {what}: the recipe changed since that run started{detail}; "
        "undo the change, or start a new run without --resume"
    )
