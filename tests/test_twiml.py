"""engine.runtime.twilio.twiml writes TwiML itself; it must be the very text the twilio package's
MessagingResponse writes, whatever the replies hold."""

from __future__ import annotations

import re
import xml.dom.minidom
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from engine.runtime.twilio import twiml

STATUS_CALLBACK = "https://surveys.example.com/twilio/status"
# What XML 1.0 cannot carry (its Char production): C0 controls but tab and line breaks,
# lone surrogates, U+FFFE and U+FFFF.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
TRICKY = ["", "&", "<", ">", '"', "'", "\n", "\r\n", "\t", "]]>", "&amp;", "😀", "a & b < c > d", "ü"]


def messaging_response(replies: list[str], status_callback: str | None) -> str:
    response = MessagingResponse()
    for reply in replies:
        if status_callback:
            response.message(reply, action=status_callback, method="POST")
        else:
            response.message(reply)
    return str(response)


xml_text = st.text().filter(lambda text: not NOT_XML.search(text))
replies = st.lists(st.one_of(xml_text, st.sampled_from(TRICKY)), max_size=4)
callbacks = st.one_of(st.none(), st.just(STATUS_CALLBACK),
                      xml_text.filter(bool).map(lambda text: STATUS_CALLBACK + "?q=" + text))
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())  # surrogates and non-characters too
any_text = st.text(ANY_CHARACTER) | st.sampled_from(["\x00", "\x01", "\x0b", "\x1f", "\ufffe", "\uffff", "\ud800",
                                                     "a\udfffb", "\x7f\x85", "]]>\x08"])


@settings(max_examples=500)
@given(replies, callbacks)
def test_twiml_is_what_messaging_response_writes(replies, status_callback):
    assert twiml(replies, status_callback) == messaging_response(replies, status_callback)


def test_tricky_replies_one_by_one_and_together():
    for status_callback in (None, STATUS_CALLBACK, 'https://x.example/s?a=1&b="2"\n'):
        for reply in TRICKY:
            assert twiml([reply], status_callback) == messaging_response([reply], status_callback)
        assert twiml(TRICKY, status_callback) == messaging_response(TRICKY, status_callback)


def test_no_replies_is_an_empty_response():
    assert twiml([]) == twiml([], STATUS_CALLBACK) == messaging_response([], None)


@settings(max_examples=500)
@given(st.lists(any_text, max_size=4), st.one_of(st.none(), any_text.map(lambda text: STATUS_CALLBACK + "?q=" + text)))
def test_twiml_is_well_formed_xml_whatever_the_text(replies, status_callback):
    written = twiml(replies, status_callback)
    written.encode("utf-8")  # no lone surrogate is left to break the response body
    root = ET.fromstring(written)
    xml.dom.minidom.parseString(written.encode("utf-8"))
    carried = [NOT_XML.sub("", reply) for reply in replies]
    as_parsed = [text.replace("\r\n", "\n").replace("\r", "\n") for text in carried]  # XML's line ends
    assert ["".join(message.itertext()) for message in root.findall("Message")] == as_parsed
    assert written == messaging_response(carried, status_callback and NOT_XML.sub("", status_callback))


def test_control_characters_are_dropped_and_the_rest_is_kept():
    assert twiml(["a\x01b\x0bc", "\ufffe\uffffd\ud800"]) == messaging_response(["abc", "d"], None)
