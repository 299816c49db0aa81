"""SMS segment counting as Twilio does it: GSM-7 or UCS-2, single or concatenated parts.

A single SMS carries 140 octets: 160 GSM-7 septets or 70 UTF-16 code units. A concatenated
part loses 6 octets to the User Data Header, leaving 153 septets or 67 code units. An
extension-table character (escape + char, 2 septets) and a surrogate pair (2 code units) are
never split across parts; the part is closed early and the pair moves on whole.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}  # (single message, each concatenated part)

# GSM 03.38 basic character set (ESC 0x1B itself is not a sendable character).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs 2 septets (escape + char).
_GSM7_EXT = frozenset("\f^{}\\[]~|€")
_GSM7_ALL = _GSM7_BASIC | _GSM7_EXT


def _pairs(targets: str, sources: str) -> dict[str, str]:
    return dict.fromkeys(sources, targets)


# Twilio Smart Encoding, following Twilio's published "List of characters replaced by Smart
# Encoding" (and Twilio's message-segment-calculator, which mirrors it). Deliberately NOT
# included because Twilio does not list them (counting them as GSM-7 would under-count cost):
# ′ ″ (U+2032/3), ‑ ‒ (U+2011/2), soft hyphen U+00AD, fullwidth lowercase letters. Note
# Twilio maps ‚ (U+201A) to a comma and « » to a double quote. The calculator maps ‹ › to
# > < (swapped); we use < > (same segment count either way). Its control-character and
# tab (-> 7 spaces) entries look invented rather than documented, so they are left out.
SMART_ENCODING: dict[str, str] = {
    **_pairs('"', "«»“”ʺˮ‟❝❞〝〞＂„"),
    **_pairs("'", "‘’ʻˈʼʽʹ‛＇´ˊ`ˋ❛❜\u0313\u0314︐︑"),
    **_pairs("/", "÷⧸\u0337\u0338⁄∕／"),
    "¼": "1/4", "½": "1/2", "¾": "3/4",
    **_pairs("\\", "⧹⧵\u20e5﹨＼"),
    **_pairs("_", "\u0332＿‗"),
    **_pairs("|", "\u20d2\u20d3∣｜⎸⎹⏐⎜⎟"),
    **_pairs("-", "⎼⎽―﹣－‐⁃—–•"),
    **_pairs("@", "﹫＠"), **_pairs("$", "﹩＄"), **_pairs("!", "ǃ︕﹗！"),
    **_pairs("#", "﹟＃"), **_pairs("%", "﹪％"), **_pairs("&", "﹠＆"),
    **_pairs(",", "‚\u0326﹐﹑，､、"),
    **_pairs("(", "❨❪﹙（⟮⦅"), **_pairs(")", "❩❫﹚）⟯⦆"),
    **_pairs("*", "⁎∗⊛✢✣✤✥✱✲✳✺✻✼✽❃❉❊❋⧆﹡＊"),
    **_pairs("+", "˖﹢＋"), **_pairs(".", "。﹒．｡"),
    **{chr(0xFF10 + i): str(i) for i in range(10)},  # fullwidth digits
    **_pairs(":", "ː˸⦂꞉︓："), **_pairs(";", "⁏︔﹔；"),
    **_pairs("<", "﹤＜‹"), **_pairs("=", "\u0347꞊﹦＝"), **_pairs(">", "﹥＞›"),
    **_pairs("?", "︖﹖？"),
    **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},  # fullwidth capitals
    **dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "ABCDEFGHIJKLMNOPRSTUVWYZ", strict=True)),
    **_pairs("^", "ˆ\u0302＾\u1dcd"), **_pairs("{", "❴﹛｛"), **_pairs("}", "❵﹜｝"),
    "［": "[", "］": "]",
    **_pairs("~", "˜˷\u0303\u0330\u0334∼～"),
    **_pairs(" ", "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                  "\u202f\u205f\u3000\u2028\u2029"),
    **_pairs("", "\u200b\ufeff\u2060"),  # zero-width characters are dropped
    "…": "...", "‼": "!!",
}
_SMART_TABLE = str.maketrans(SMART_ENCODING)


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segment_units: list[int]  # units in each segment, summing to units

    def to_json(self) -> dict:
        return {"encoding": self.encoding, "segments": self.segments,
                "units": self.units, "segment_units": list(self.segment_units)}


def smart_encode(text: str) -> str:
    """Apply the Smart Encoding substitutions (NFC first), whether or not the result is GSM-7."""
    return unicodedata.normalize("NFC", text).translate(_SMART_TABLE)


def is_gsm7(text: str) -> bool:
    return set(unicodedata.normalize("NFC", text)) <= _GSM7_ALL


def ucs2_culprits(text: str) -> list[tuple[int, str, str | None]]:
    """Characters forcing UCS-2 as (index, char, Smart Encoding look-alike or None).

    Indices are into the NFC-normalised text (the same as `text` when it is already NFC, the
    usual case). A look-alike of "" means Smart Encoding drops the character.
    """
    text = unicodedata.normalize("NFC", text)
    return [(i, ch, SMART_ENCODING.get(ch)) for i, ch in enumerate(text) if ch not in _GSM7_ALL]


# ASCII outside the GSM-7 basic set: controls but line breaks, and [ \\ ] ^ ` { | } ~
_ASCII_BEYOND_BASIC = re.compile(r"[^\n\r\x20-\x5a_a-z]")


def _split(units: int, encoding: str) -> list[int]:
    single, part = _LIMITS[encoding]
    if units <= single:
        return [units]
    full, rest = divmod(units, part)
    return [part] * full + ([rest] if rest else [])


def _pack(widths: list[int], part: int) -> list[int]:
    """Greedy packing into parts of `part` units, never splitting a 2-unit character."""
    parts, cur = [], 0
    for w in widths:
        if cur + w > part:
            parts.append(cur)
            cur = 0
        cur += w
    parts.append(cur)
    return parts


def count(text: str, smart: bool = False) -> SegmentCount:
    """Count segments as Twilio does.

    With smart, Twilio substitutes only when that makes the whole message GSM-7; if anything
    (an emoji, say) still needs UCS-2 the original text is sent unchanged, so it is counted.
    An empty body counts as 1 segment of 0 units, as Twilio's segment calculator reports it.
    """
    if not smart and text.isascii() and not _ASCII_BEYOND_BASIC.search(text):
        # the usual message: its every character one septet (and ASCII is its own NFC)
        parts = _split(len(text), GSM7)
        return SegmentCount(GSM7, len(parts), len(text), parts)
    text = unicodedata.normalize("NFC", text)
    if smart:
        replaced = text.translate(_SMART_TABLE)
        if set(replaced) <= _GSM7_ALL:
            text = replaced
    chars = set(text)
    if chars <= _GSM7_BASIC:  # fast path: 1 septet per character
        encoding, units = GSM7, len(text)
        parts = _split(units, encoding)
    elif chars <= _GSM7_ALL:
        encoding = GSM7
        units = len(text) + sum(text.count(c) for c in chars & _GSM7_EXT)
        parts = (_split(units, encoding) if units <= 160
                 else _pack([2 if c in _GSM7_EXT else 1 for c in text], 153))
    else:
        encoding = UCS2
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2
        parts = (_split(units, encoding) if units == len(text) or units <= 70
                 else _pack([2 if c > "\uffff" else 1 for c in text], 67))
    return SegmentCount(encoding, len(parts), units, parts)


def run_segments(text: str, smart: bool = False, as_json: bool = False) -> int:
    """`canvass segments [--smart] [--json] TEXT`."""
    result = count(text, smart=smart)
    if as_json:
        print(json.dumps(result.to_json()))
        return 0
    noun = "segment" if result.segments == 1 else "segments"
    line = f"{result.encoding}, {result.segments} {noun}, {result.units} units"
    if result.segments > 1:
        line += " (" + " + ".join(map(str, result.segment_units)) + ")"
    print(line)
    if result.encoding == UCS2:
        for i, ch, alike in ucs2_culprits(text):
            hint = "" if alike is None else f", Smart Encoding: {alike!r}"
            print(f"  UCS-2 because of {ch!r} (U+{ord(ch):04X}) at {i}{hint}")
    return 0
