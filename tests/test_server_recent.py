"""A worker steps a conversation it committed last without reading it first (engine.runtime.service.Recent):
still exactly once, also when another worker moved the conversation on meanwhile."""

from __future__ import annotations

from conftest import LAYOUT
from fake_twilio import Phone, replies_of

from engine.conversation import Respondent
from engine.redis.store import Change, Snapshot, split_record
from engine.runtime.service import Recent
from server import STORE

SCORE_PROMPT = "Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
REASON_PROMPT = "What is the main reason for your score?"
VISIT_PROMPT = "What did you shop for?\n1. Groceries\n2. Clothing"


def count_reads(client) -> list:
    """The conversations the app's store reads from now on."""
    store, reads = client.server.app[STORE], []
    read = store.read

    async def counted(channel, phone, message_sid=None):
        reads.append((channel, phone))
        return await read(channel, phone, message_sid)

    store.read = counted
    return reads


def stored(redis_sync, number: str) -> tuple[str, str]:
    """(revision, record) of the number's SMS conversation."""
    record, revision = split_record(redis_sync.get(LAYOUT.respondent("sms", number)))
    return revision, record


async def metric(client, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_the_next_message_of_a_conversation_is_committed_without_reading_it_first(client, redis_sync):
    phone = Phone(client, "+15551230401")
    assert await phone.send("@feed") == [SCORE_PROMPT]
    reads = count_reads(client)
    assert await phone.send("9") == [REASON_PROMPT]
    assert await phone.send("Friendly staff") == [VISIT_PROMPT]
    assert reads == []
    assert stored(redis_sync, phone.number)[0] == "3"


async def test_a_conversation_another_worker_moved_on_is_read_again_and_stepped_once(
        client, make_client, settings, redis_sync):
    other = await make_client(settings)  # a second worker on the same Redis
    here, there = Phone(client, "+15551230402"), Phone(other, "+15551230402")
    assert await here.send("@feed") == [SCORE_PROMPT]
    assert await there.send("9") == [REASON_PROMPT]  # what `client` committed is stale now
    reads = count_reads(client)
    assert await here.send("Friendly staff") == [VISIT_PROMPT]
    assert reads == [("sms", here.number)]
    revision, _ = stored(redis_sync, here.number)
    assert revision == "3"
    assert await metric(client, "canvass_commit_conflicts_total") == 0
    assert await here.send("2") == ["Thanks for your feedback!"]  # and known again from there on
    assert reads == [("sms", here.number)]


async def test_a_redelivery_of_a_message_just_applied_gets_its_reply_and_changes_nothing(client, redis_sync):
    phone = Phone(client, "+15551230403")
    await phone.send("@feed")
    form = phone.form("8")
    first = await phone.post(form)
    before = stored(redis_sync, phone.number)
    again = await phone.post(form)
    assert replies_of(await first.text()) == replies_of(await again.text()) == [REASON_PROMPT]
    assert stored(redis_sync, phone.number) == before
    assert await metric(client, "canvass_duplicate_webhooks_total") == 1


def committed(recent: Recent, revision: str, number: str = "+15551230404") -> None:
    recent.committed(Snapshot("sms", number, "record", revision, None), Change(record="next", record_ttl=60),
                     Respondent("sms", number))


def test_recent_entries_are_trusted_until_most_turn_out_stale_and_again_once_they_hold():
    recent = Recent(size=2)
    committed(recent, "4")
    assert recent.get("sms", "+15551230404") == (Snapshot("sms", "+15551230404", "next", "5", None),
                                                 Respondent("sms", "+15551230404"))
    while recent.get("sms", "+15551230404") is not None:  # other workers keep moving it on
        recent.stale(recent.get("sms", "+15551230404")[0])
        committed(recent, "9")
    assert recent.current_share < 0.5
    revision = 9
    while recent.get("sms", "+15551230404") is None:  # commits after reads find entries current
        committed(recent, str(revision + 1))
        revision += 1
    assert recent.current_share >= 0.5


def test_recent_keeps_only_the_latest_conversations():
    recent = Recent(size=2)
    for number in ("+15551230405", "+15551230406", "+15551230407"):
        committed(recent, "0", number)
    assert recent.get("sms", "+15551230405") is None
    assert recent.get("sms", "+15551230407") is not None


async def test_a_start_reads_the_conversation_even_when_this_worker_committed_it_last(
        client, make_client, settings):
    from conftest import admin_headers

    other = await make_client(settings)  # a second worker on the same Redis
    here, there = Phone(client, "+15551230408"), Phone(other, "+15551230408")
    assert await here.send("@feed") == [SCORE_PROMPT]
    assert await there.send("STOP") == []  # `client` still holds the open session it committed
    assert await there.send("START") != []
    response = await client.post("/admin/surveys/feedback/start", json={"to": here.number},
                                 headers=admin_headers())
    assert response.status == 201, await response.text()  # from a stale copy: 409 open_session


def test_an_old_entry_is_not_trusted(monkeypatch):
    import engine.runtime.service as service

    recent = Recent()
    committed(recent, "4")
    assert recent.get("sms", "+15551230404") is not None
    later = service.time.monotonic() + service.KNOWN_FOR + 1
    monkeypatch.setattr(service.time, "monotonic", lambda: later)
    assert recent.get("sms", "+15551230404") is None


async def test_the_remembered_respondent_is_the_one_its_stored_record_decodes_to(client, clock, redis_sync):
    from server import SERVICE

    service, phone = client.server.app[SERVICE], Phone(client, "+15551230409")
    clock.advance(0.73)  # steps happen at whole seconds, as records keep time
    for text in ("@feed", "9", "Friendly staff"):
        await phone.send(text)
        clock.advance(61.37)
        snapshot, respondent = service.recent.get("sms", phone.number)
        _, record = stored(redis_sync, phone.number)
        assert snapshot.record == record
        assert respondent == Respondent.loads(record, "sms", phone.number)
