"""How a reply is compared with a choice's words (its code, label and synonyms): case, accents,
spaces and the joining marks between words (hyphens, apostrophes, dots), and spaces or
punctuation around the words do not count ("SI!" is "Sí"; "PEUT ETRE" and "Peutêtre" are
"Peut-être"; in a reply with digits, spaces only collapse: "1 2" is not "12"). Two choices whose words fold alike are reported by the checker (W020).

The checker uses it to find words two choices share; the engine to match replies."""

from __future__ import annotations

import string
import unicodedata

_AROUND = string.whitespace + string.punctuation + "¡¿«»“”‘’…"


def trim(text: str) -> str:
    """The words of a reply as written, without the spacing and punctuation around them."""
    return " ".join(text.strip(_AROUND).split())


_JOINING = str.maketrans("", "", string.whitespace + "-_.'’‐‑–")  # nothing between words counts


def fold(text: str) -> str:
    """The form of a whole message as keywords and language names are compared: case, accents,
    inner spacing and what is around it do not count ("S T O P" stays three letters)."""
    text = " ".join(text.strip(_AROUND).split()).casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).strip(_AROUND)


def fold_answer(text: str) -> str:
    """The form two replies share when they answer a choice alike: fold(), and the spaces and
    joining marks between words dropped, unless the reply holds digits ("1 2" is two codes,
    never code 12)."""
    text = fold(text)
    if any(c.isdigit() for c in text):
        return text
    return text.translate(_JOINING)
