"""How a reply is compared with a choice's words (its code, label and synonyms): case, accents,
inner spacing, and spaces or punctuation around the words do not count ("SI!" is "Sí").

The checker uses it to find words two choices share; the engine to match replies."""

from __future__ import annotations

import string
import unicodedata

_AROUND = string.whitespace + string.punctuation + "¡¿«»“”‘’…"


def trim(text: str) -> str:
    """The words of a reply as written, without the spacing and punctuation around them."""
    return " ".join(text.strip(_AROUND).split())


def fold(text: str) -> str:
    """The form two replies share when they count as the same answer."""
    text = " ".join(text.strip(_AROUND).split()).casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(_AROUND)
