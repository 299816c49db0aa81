"""engine.runtime.twilio checks X-Twilio-Signature with an HMAC of its own (signature_of); it must be
RequestValidator.compute_signature's result for any form, and signature_valid must accept what
RequestValidator.validate accepts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, RequestValidator

from engine.runtime.twilio import SIGNATURE_SETTINGS_HEADER, signature_of, signature_valid

TOKEN = "12345678901234567890123456789012"
URL = "https://surveys.example.com/twilio/messages"
DIGESTS = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}

# Field names and values as a form carries them, repeated names included (a MultiDict).
pairs = st.lists(st.tuples(st.sampled_from(["Body", "From", "To", "MessageSid", "b", "a", ""]) | st.text(),
                           st.text()), max_size=8)
urls = st.sampled_from([URL, "http://127.0.0.1:8080/twilio/messages", URL + "?x=1&y=%20"]) | \
    st.text().map(lambda text: URL + "?q=" + text)


def form_of(items: list[tuple[str, str]]) -> MultiDictProxy:
    return MultiDictProxy(MultiDict(items))


@settings(max_examples=300)
@given(pairs, urls, st.sampled_from([HMAC_SHA1, HMAC_SHA256]))
def test_signature_of_is_what_the_twilio_package_computes(items, url, algorithm):
    form = form_of(items)
    expected = RequestValidator(TOKEN).compute_signature(url, form, algorithm)
    assert signature_of(TOKEN, url, form, DIGESTS[algorithm]) == expected
    assert signature_of(TOKEN, url, dict(form), DIGESTS[algorithm]) == \
        RequestValidator(TOKEN).compute_signature(url, dict(form), algorithm)


@settings(max_examples=200)
@given(pairs, st.sampled_from([HMAC_SHA1, HMAC_SHA256]), st.booleans())
def test_signature_valid_agrees_with_the_validator(items, algorithm, forged):
    form = form_of(items)
    signature = RequestValidator(TOKEN).compute_signature(URL, form, algorithm)
    if forged:
        signature = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    headers = {"X-Twilio-Signature": signature}
    if algorithm == HMAC_SHA256:
        headers[SIGNATURE_SETTINGS_HEADER] = f"key=webhooks_sharedkey_1,algorithm={algorithm}"
    assert signature_valid(TOKEN, URL, form, headers) is not forged
    assert RequestValidator(TOKEN).validate(URL, form, signature, algorithm) is not forged


def test_a_signature_over_the_address_with_its_default_port_is_still_accepted():
    form = form_of([("Body", "hi"), ("From", "+15551230001")])
    signature = RequestValidator(TOKEN).compute_signature("https://surveys.example.com:443/twilio/messages", form)
    assert signature_valid(TOKEN, URL, form, {"X-Twilio-Signature": signature})


def test_missing_non_ascii_and_unknown_algorithm_signatures_are_refused():
    form = form_of([("Body", "hi")])
    good = RequestValidator(TOKEN).compute_signature(URL, form)
    assert not signature_valid(TOKEN, URL, form, {})
    assert not signature_valid(TOKEN, URL, form, {"X-Twilio-Signature": "é" + good[1:]})
    assert not signature_valid(TOKEN, URL, form, {"X-Twilio-Signature": good,
                                                  SIGNATURE_SETTINGS_HEADER: "algorithm=HMAC_MD5"})
