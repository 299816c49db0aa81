import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.sms import segments
from engine.sms.segments import count, is_gsm7, smart_encode, ucs2_culprits
from engine.tools.cli import main

EMOJI = "\U0001F600"  # outside the BMP: a surrogate pair, 2 UTF-16 units
ZH = "ж"  # in the BMP but not GSM-7: forces UCS-2, 1 unit

BOUNDARIES = [
    # (id, text, encoding, segment_units)
    ("empty", "", "GSM-7", [0]),
    ("gsm-160", "a" * 160, "GSM-7", [160]),
    ("gsm-161", "a" * 161, "GSM-7", [153, 8]),
    ("gsm-306", "a" * 306, "GSM-7", [153, 153]),
    ("gsm-307", "a" * 307, "GSM-7", [153, 153, 1]),
    ("gsm-459", "a" * 459, "GSM-7", [153, 153, 153]),
    ("gsm-460", "a" * 460, "GSM-7", [153, 153, 153, 1]),
    ("ext-fits-single", "a" * 158 + "€", "GSM-7", [160]),
    ("ext-tips-over-single", "a" * 159 + "€", "GSM-7", [153, 8]),
    ("ext-straddles-153", "a" * 152 + "€" + "a" * 10, "GSM-7", [152, 12]),
    ("ext-ends-at-153", "a" * 151 + "€" + "a" * 10, "GSM-7", [153, 10]),
    ("ext-only-80", "€" * 80, "GSM-7", [160]),
    ("ext-only-81", "€" * 81, "GSM-7", [152, 10]),
    ("ext-all-kinds", "^{}\\[]~|€\f", "GSM-7", [20]),
    ("ucs2-70", ZH * 70, "UCS-2", [70]),
    ("ucs2-71", ZH * 71, "UCS-2", [67, 4]),
    ("ucs2-134", ZH * 134, "UCS-2", [67, 67]),
    ("ucs2-135", ZH * 135, "UCS-2", [67, 67, 1]),
    ("ucs2-201", ZH * 201, "UCS-2", [67, 67, 67]),
    ("ucs2-202", ZH * 202, "UCS-2", [67, 67, 67, 1]),
    ("emoji-fits-single", ZH * 68 + EMOJI, "UCS-2", [70]),
    ("emoji-straddles-67", ZH * 66 + EMOJI + ZH * 5, "UCS-2", [66, 7]),
    ("emoji-ends-at-67", ZH * 65 + EMOJI + ZH * 5, "UCS-2", [67, 5]),
    ("emoji-only-35", EMOJI * 35, "UCS-2", [70]),
    ("emoji-only-36", EMOJI * 36, "UCS-2", [66, 6]),
    ("gsm-ext-in-ucs2-is-1-unit", ZH + "€" * 69, "UCS-2", [70]),
    ("nfc-composes-to-gsm", "e\u0301" * 160, "GSM-7", [160]),
    ("nfc-angstrom-sign", "\u212b", "GSM-7", [1]),
    ("gsm-basic-greek-and-accents", "ΔΦΓΛΩΠΨΣΘΞ@£$¥èéùìòÇØøÅåÆæßÉ¡ÄÖÑÜ§¿äöñüà", "GSM-7", [40]),
    ("backtick-is-not-gsm", "`", "UCS-2", [1]),
    ("tab-is-not-gsm", "a\tb", "UCS-2", [3]),
]


@pytest.mark.parametrize(("text", "encoding", "parts"),
                         [c[1:] for c in BOUNDARIES], ids=[c[0] for c in BOUNDARIES])
def test_boundaries(text, encoding, parts):
    result = count(text)
    assert result.encoding == encoding
    assert result.segment_units == parts
    assert result.segments == len(parts)
    assert result.units == sum(parts)
    assert is_gsm7(text) == (encoding == "GSM-7")


def test_empty_body_is_one_segment_of_zero_units():
    assert count("").to_json() == {"encoding": "GSM-7", "segments": 1, "units": 0,
                                   "segment_units": [0]}


def test_nfc_normalisation():
    decomposed = "Caf" + "e\u0301"
    assert len(decomposed) == 5
    assert count(decomposed).encoding == "GSM-7"
    assert count(decomposed).units == 4
    assert ucs2_culprits(decomposed) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("“Hello” it’s", '"Hello" it\'s'),
    ("‘a’ ‚b‛ „c‟", "'a' ,b' \"c\""),
    ("« a » ‹ b ›", '" a " < b >'),
    ("a – b — c ‐ d ― e", "a - b - c - d - e"),
    ("wait…", "wait..."),
    ("a\u00a0b\u2002c\u2009d\u202fe\u205ff\u3000g", "a b c d e f g"),
    ("zero\u200bwidth\ufeff", "zerowidth"),
    ("ＡＢＣ１２３！？", "ABC123!?"),
    ("½ ÷ ¼", "1/2 / 1/4"),
])
def test_smart_encode(text, expected):
    assert smart_encode(text) == expected


def test_smart_table_maps_only_to_gsm7():
    for char, replacement in segments.SMART_ENCODING.items():
        assert not is_gsm7(char), char
        assert is_gsm7(replacement), (char, replacement)


def test_smart_turns_curly_quotes_into_gsm7():
    text = "“Hello” – it’s a 2-minute survey…"
    assert count(text).encoding == "UCS-2"
    smart = count(text, smart=True)
    assert smart.encoding == "GSM-7"
    assert smart.units == len('"Hello" - it\'s a 2-minute survey...')


def test_smart_is_all_or_nothing():
    # Twilio only substitutes when the whole message then fits GSM-7; otherwise the original
    # is sent as UCS-2, so "…" still counts 1 unit rather than 3.
    text = "“Hi”… " + EMOJI
    assert count(text, smart=True) == count(text)
    assert count(text, smart=True).units == 8


def test_smart_can_add_segments():
    result = count("…" * 60, smart=True)
    assert (result.encoding, result.segment_units) == ("GSM-7", [153, 27])
    assert count("…" * 60).segment_units == [60]


def test_ucs2_culprits_name_char_and_lookalike():
    assert ucs2_culprits("Don’t panic " + EMOJI + "\u200b") == [
        (3, "’", "'"), (12, EMOJI, None), (13, "\u200b", ""),
    ]
    assert ucs2_culprits("plain {GSM} €5") == []


def test_cli_json(capsys):
    assert main(["segments", "--json", "hello", "world"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "encoding": "GSM-7", "segments": 1, "units": 11, "segment_units": [11]}


def test_cli_json_smart(capsys):
    assert main(["segments", "--json", "--smart", "it’s"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["encoding"] == "GSM-7"


def test_cli_human(capsys):
    assert main(["segments", "a" * 170]) == 0
    assert capsys.readouterr().out.strip() == "GSM-7, 2 segments, 170 units (153 + 17)"
    assert main(["segments", "hi"]) == 0
    assert capsys.readouterr().out.strip() == "GSM-7, 1 segment, 2 units"
    assert main(["segments", "it’s"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("UCS-2, 1 segment, 4 units\n")
    assert "U+2019" in out


TRICKY = ["a", " ", "\n", "€", "{", "\f", "é", "e\u0301", ZH, EMOJI, "’", "…", "\u200b", "“"]


@given(st.one_of(st.lists(st.sampled_from(TRICKY), max_size=500).map("".join),
                 st.text(max_size=300)),
       st.booleans())
def test_properties(text, smart):
    result = count(text, smart=smart)
    single, part = (160, 153) if result.encoding == "GSM-7" else (70, 67)
    assert sum(result.segment_units) == result.units
    assert result.segments == len(result.segment_units) >= 1
    assert (result.segments == 1) == (result.units <= single)
    if result.segments > 1:
        # every part is non-empty and within the limit; a part is closed early by at most 1
        # unit (a 2-unit character that would not fit moves to the next part)
        assert all(part - 1 <= u <= part for u in result.segment_units[:-1])
        assert 0 < result.segment_units[-1] <= part
    body = unicodedata.normalize("NFC", text)
    if smart and is_gsm7(smart_encode(text)):
        body = smart_encode(text)
    if result.encoding == "GSM-7":
        assert is_gsm7(body)
        assert result.units == sum(2 if c in "\f^{}\\[]~|€" else 1 for c in body)
    else:
        assert not is_gsm7(body)
        assert result.units == len(body.encode("utf-16-le")) // 2
    assert result.to_json()["segment_units"] == result.segment_units
