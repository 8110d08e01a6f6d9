"""Person names (VR PN) as Search matches them: case- and accent-insensitive, component by component.

PS3.4 C.2.2.2.1 leaves PN matching to the implementation ("insensitive to some or
all aspects of case, position, accent"), as it does PN wild cards (C.2.2.2.4).
What we chose, after dcm4chee-arc (component-wise, case-insensitive) and Orthanc
(the whole value, case-insensitive unless ``CaseSensitivePN``):

- Values and keys are *folded*: Unicode compatibility decomposition, combining
  marks dropped, upper case (``Müller`` and ``MULLER`` match; ``ß`` is ``SS``).
  Spaces around components and trailing empty components or groups do not count
  (``DOE^JOHN^^^`` is ``DOE^JOHN``).
- A key with component delimiters (``DOE^J*``) matches component by component:
  family, given and middle names of the alphabetic group, each with ``*`` and
  ``?``; a component left empty (or ``*``) matches anything; prefix and suffix
  are not compared (as dcm4chee).
- A key of one component (``DOE``, ``DOE*``, ``*OHN*``) matches a name whose
  family name matches it (dcm4chee) or whose whole value does (Orthanc): both
  peers' clients find what they expect.
- A key with component groups (``YAMADA^TARO=山田^太郎``) matches group by group the
  whole folded groups it gives (an empty one matches any; groups it leaves out too).
- Fuzzy semantic matching (QIDO-RS ``fuzzymatching``, C-FIND extended negotiation)
  is order-tolerant word matching: every word of the key (split at anything but
  letters, digits, ``*`` and ``?``) must begin a word of the name, in any
  component and group, in any order (``john doe`` finds ``DOE^JOHNATHAN``).

:func:`forms` makes the columns the catalog keeps of a stored name; the SQL
conditions (``voxelgate.imaging.dicom.matching``) and :func:`matches`, the same
rules in Python, use them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .wildcards import wildcard_match

_WORD_BREAK = re.compile(r"[^\w]+")
_KEY_WORD_BREAK = re.compile(r"[^\w*?]+")


def fold(text: str) -> str:
    """Upper case without accents (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()


def _trim(parts: list[str]) -> list[str]:
    while parts and not parts[-1]:
        parts.pop()
    return parts


def canonical(value: str) -> str:
    """The folded value with spaces around components and trailing empty components and groups removed."""
    groups = ["^".join(_trim([c.strip() for c in g.split("^")])) for g in fold(value).split("=")]
    return "=".join(_trim(groups))


@dataclass(frozen=True)
class NameForms:
    """What the catalog keeps of a stored name (see the module docstring)."""

    key: str
    family: str
    given: str
    middle: str
    words: str  # " W1 W2 ... ", every word of every component and group


def forms(value: str) -> NameForms:
    """The :class:`NameForms` of a stored PN value (``A^B^C^D^E=ideographic=phonetic``)."""
    key = canonical(value)
    comps = [*key.split("=", 1)[0].split("^"), "", "", ""]
    words = [w for w in _WORD_BREAK.split(key) if w]
    return NameForms(key, comps[0], comps[1], comps[2], f" {' '.join(words)} " if words else "")


@dataclass(frozen=True)
class NameKey:
    """A PN matching key, parsed: one of ``universal``, ``single`` (one component: ``pattern``),
    ``components`` (family, given, middle patterns, empty meaning any), ``groups`` (``pattern`` against
    the whole folded value) or ``fuzzy`` (``words``, each to begin a word of the name)."""

    kind: str
    pattern: str = ""  # single: the component; groups: the groups, "=" between, an empty one as "*"
    components: tuple[str, str, str] = ("", "", "")
    words: tuple[str, ...] = ()


def parse_key(value: str, *, fuzzy: bool) -> NameKey:
    """The :class:`NameKey` of a matching value."""
    folded = fold(value).strip()
    if folded in ("", "*"):
        return NameKey("universal")
    if fuzzy:
        words = tuple(w for w in _KEY_WORD_BREAK.split(folded) if w and w != "*")
        return NameKey("fuzzy", words=words) if words else NameKey("universal")
    if "=" in folded:
        groups = [g or "*" for g in canonical(folded).split("=")]
        return NameKey("groups", pattern="=".join(groups))
    if "^" not in folded:
        return NameKey("single", pattern=folded)
    comps = [c.strip() for c in folded.split("^")] + ["", "", ""]
    family, given, middle = (c if c != "*" else "" for c in comps[:3])
    if not (family or given or middle):
        return NameKey("universal")
    return NameKey("components", components=(family, given, middle))


def matches(value: str, key: NameKey) -> bool:
    """Whether the stored PN ``value`` matches ``key`` (the rules the SQL conditions spell)."""
    if key.kind == "universal":
        return True
    f = forms(value)
    if key.kind == "fuzzy":
        return bool(f.words) and all(wildcard_match(f"* {w}*", f.words) for w in key.words)
    if key.kind == "groups":
        return wildcard_match(key.pattern, f.key) or wildcard_match(key.pattern + "=*", f.key)
    if key.kind == "single":
        return wildcard_match(key.pattern, f.family) or wildcard_match(key.pattern, f.key)
    return all(
        not pattern or wildcard_match(pattern, got)
        for pattern, got in zip(key.components, (f.family, f.given, f.middle), strict=True)
    )


__all__ = ["NameForms", "NameKey", "canonical", "fold", "forms", "matches", "parse_key"]
