"""engine.runtime.twilio.twiml writes TwiML itself; it must be the very text the twilio package's
MessagingResponse writes, whatever the replies hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from engine.runtime.twilio import twiml

STATUS_CALLBACK = "https://surveys.example.com/twilio/status"
TRICKY = ["", "&", "<", ">", '"', "'", "\n", "\r\n", "\t", "]]>", "&amp;", "😀", "a & b < c > d", "ü"]


def messaging_response(replies: list[str], status_callback: str | None) -> str:
    response = MessagingResponse()
    for reply in replies:
        if status_callback:
            response.message(reply, action=status_callback, method="POST")
        else:
            response.message(reply)
    return str(response)


replies = st.lists(st.one_of(st.text(), st.sampled_from(TRICKY)), max_size=4)
callbacks = st.one_of(st.none(), st.just(STATUS_CALLBACK),
                      st.text(min_size=1).map(lambda text: STATUS_CALLBACK + "?q=" + text))


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
