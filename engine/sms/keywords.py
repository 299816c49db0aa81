"""Carrier-style keywords, matched on the whole message (case, accents, spaces and punctuation
around ignored: dsl.matching.fold).

The carrier-standard English keywords always count. Beside them, each language Canvass ships
has its own opt-out and help words (ALTO, ARRET, HILFE...); they count too, with one exception
that keeps answers answers: engine.conversation lets a reply the open choice question takes as an
answer ("Baja" for "¿Precio? Alta / Baja") be that answer. Words that are everyday answers in
some language are deliberately left out: FIN (Spanish and French for "end"), NO, NON, NEIN.
While a number is opted out, "yes" in each language opts it back in (an everyday answer otherwise).
The README's table of keywords lists the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsl.matching import fold

OPT_OUT, OPT_IN, HELP = "opt_out", "opt_in", "help"


@dataclass(frozen=True)
class Keyword:
    kind: str  # OPT_OUT | OPT_IN | HELP
    language: str | None  # None: a carrier-standard English keyword; else the language it is a word of


_STANDARD = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), OPT_OUT),
    **dict.fromkeys(("START", "UNSTOP"), OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), HELP),
}
# Each language's own words (written without accents: replies are folded before the lookup).
LOCAL = {
    "es": {OPT_OUT: ("ALTO", "BAJA", "PARAR", "DETENER", "CANCELAR"), HELP: ("AYUDA",)},
    "fr": {OPT_OUT: ("ARRET", "ARRETER", "DESABONNER", "DESINSCRIRE"), HELP: ("AIDE",)},
    "pt": {OPT_OUT: ("PARAR", "SAIR", "CANCELAR", "DESCADASTRAR"), HELP: ("AJUDA",)},
    "de": {OPT_OUT: ("STOPP", "ABMELDEN", "BEENDEN"), HELP: ("HILFE",)},
}
YES_WHEN_OPTED_OUT = {"en": "YES", "es": "SI", "fr": "OUI", "pt": "SIM", "de": "JA"}

_WORDS: dict[str, Keyword] = {word.casefold(): Keyword(kind, None) for word, kind in _STANDARD.items()}
for _language, _kinds in LOCAL.items():
    for _kind, _words in _kinds.items():
        for _word in _words:
            _WORDS.setdefault(_word.casefold(), Keyword(_kind, _language))  # PARAR: Spanish first
_OPT_IN_WHEN_OPTED_OUT = {word.casefold(): Keyword(OPT_IN, None if language == "en" else language)
                          for language, word in YES_WHEN_OPTED_OUT.items()}


def keyword(text: str, opted_out: bool = False) -> Keyword | None:
    """The keyword the message is, else None."""
    word = fold(text)
    if opted_out and word in _OPT_IN_WHEN_OPTED_OUT:
        return _OPT_IN_WHEN_OPTED_OUT[word]
    return _WORDS.get(word)
