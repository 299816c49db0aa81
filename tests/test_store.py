"""engine.redis.store against a real Redis: the respondent record, its revision, and dedupe records."""

from __future__ import annotations

import pytest
from conftest import LAYOUT, free_port
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.redis.scripts import source
from engine.redis.store import (
    DEDUPE_KEEP,
    DEDUPE_TTL,
    DELIVERY_RANKS,
    MARK_LENGTH,
    MARKS,
    REPLIES_KEPT,
    REPLIES_TTL,
    SID_MARK_LENGTH,
    TAG_LENGTH,
    Change,
    CommitUnknown,
    ReadUnknown,
    Store,
    commit_tag,
    flow_key,
    nonce_mark,
    sid_field,
    sid_mark,
    timer_member,
)

PHONE = "+15551230100"


@pytest.fixture
async def store(redis_url):
    store = await Store.open(redis_url)
    yield store
    await store.aclose()


def twilio_sid(n: int) -> str:
    return f"SM{n:032x}"


def stored_record(redis_sync, channel: str = "sms", phone: str = PHONE) -> str | None:
    """The "<revision>|<record>" part of a conversation's key, without its marks and replies."""
    stored = redis_sync.get(LAYOUT.respondent(channel, phone))
    return None if stored is None else stored.partition(MARKS)[0]


async def commit_message(store: Store, sid: str, replies: tuple[str, ...], record: str = "[2]",
                         due: float | None = None) -> bool:
    snapshot = await store.read("sms", PHONE, sid)
    assert snapshot.seen_replies is None
    committed = await store.commit(snapshot, Change(record=record, record_ttl=3600, message_sid=sid,
                                                    replies=replies, due=due))
    return committed.ok


@pytest.mark.parametrize("replies", [
    (), ("What is the main reason for your score?",), ("[not a list",), ("",), ("First", "Second"),
    ("Très bien 👍\nReply 1 or 2",), ('["quoted"]',),
])
@pytest.mark.parametrize("sid", [twilio_sid(7), "SM1", "MM" + "f" * 32])
async def test_a_seen_message_gets_back_the_identical_replies(store, replies, sid):
    assert await commit_message(store, sid, replies)
    assert (await store.read("sms", PHONE, sid)).seen_replies == list(replies)
    assert (await store.read("sms", PHONE, twilio_sid(8))).seen_replies is None
    assert (await store.read("whatsapp", PHONE, sid)).seen_replies is None


def test_every_sid_has_its_own_field_and_mark():
    sids = [twilio_sid(1), twilio_sid(2), "SM" + "A" * 32, "SM" + "a" * 32, "SM1", ":SM1",
            sid_field(twilio_sid(1)), "MM" + "0" * 32]
    fields = [sid_field(sid) for sid in sids]
    assert len(set(fields)) == len(fields)
    assert len(sid_field(twilio_sid(1))) == 22  # Twilio's 34 characters packed
    marks = [sid_mark(sid) for sid in sids]
    assert len(set(marks)) == len(marks)
    assert {len(mark) for mark in marks} == {SID_MARK_LENGTH}
    assert len(sid_mark(twilio_sid(1)) + commit_tag()) == len(nonce_mark()) == MARK_LENGTH


def test_the_scripts_walk_marks_of_the_length_the_store_writes():
    assert f"local MARK = {MARK_LENGTH}" in source("conversation.lua")
    assert f"local SID_MARK = {SID_MARK_LENGTH}" in source("conversation.lua")


async def test_the_record_carries_its_revision_and_ttl(store, redis_sync):
    first = await store.read("sms", PHONE)
    assert (first.record, first.revision) == (None, "0")
    assert (await store.commit(first, Change(record="[2]", record_ttl=3600))).ok
    assert stored_record(redis_sync) == "1|[2]"
    assert 3590 < redis_sync.ttl(LAYOUT.respondent("sms", PHONE)) <= 3600
    assert not (await store.commit(first, Change(record="[2,null,1]", record_ttl=0))).ok  # stale
    second = await store.read("sms", PHONE)
    assert (second.record, second.revision) == ("[2]", "1")
    assert (await store.commit(second, Change(record="[2,null,1]", record_ttl=0))).ok
    assert stored_record(redis_sync) == "2|[2,null,1]"
    assert redis_sync.ttl(LAYOUT.respondent("sms", PHONE)) == -1  # kept forever (an opt-out)
    assert await store.records(PHONE, ("sms", "whatsapp")) == {"sms": "[2,null,1]", "whatsapp": None}


def losing_the_first_reply(store: Store) -> None:
    """Every command runs twice, its first reply lost: what the multiplexer's retry does when
    a connection breaks after Redis ran a command and before its reply arrived."""
    execute = store.mux.execute

    async def twice(*args):
        await execute(*args)
        return await execute(*args)

    store.mux.execute = twice


async def test_a_commit_without_a_sid_repeated_after_its_reply_was_lost_knows_it_landed(store, redis_sync):
    snapshot = await store.read("sms", PHONE)
    losing_the_first_reply(store)
    assert (await store.commit(snapshot, Change(record="[2]", record_ttl=3600))).ok  # a start
    assert stored_record(redis_sync) == "1|[2]"  # written once
    assert not (await store.commit(snapshot, Change(record="[2,null,1]", record_ttl=3600))).ok  # stale
    assert stored_record(redis_sync) == "1|[2]"


async def test_a_repeated_commit_works_out_again_whether_its_flow_was_missing(store, redis_sync):
    snapshot = await store.read("sms", PHONE)
    losing_the_first_reply(store)
    committed = await store.commit(snapshot, Change(record="[2]", record_ttl=3600, pinned=("gone", "v1")))
    if LAYOUT.cluster:  # the commit noted its pin in its shard; the worker's round finds it missing
        assert committed.ok and not committed.flow_missing
        assert await store.keep_pinned_flows() == [("gone", "v1")]
    else:
        assert committed.ok and committed.flow_missing  # so the service stores the source again


async def test_pinned_flow_sources_live_as_long_as_their_sessions(store, redis_sync):
    await store.save_flow("kept", "v1", "source", "yaml", "kept.yaml", ttl=60)
    snapshot = await store.read("sms", PHONE)
    assert (await store.commit(snapshot, Change(record="[2]", record_ttl=7200, pinned=("kept", "v1")))).ok
    assert await store.keep_pinned_flows() == []
    assert 7100 < redis_sync.ttl(flow_key("kept", "v1")) <= 7200  # extended by the commit, or on a Cluster the round


async def test_a_repeated_commit_knows_it_landed_after_later_commits_without_a_sid(store, redis_url, redis_sync):
    snapshot = await store.read("sms", PHONE)
    other, execute = await Store.open(redis_url), store.mux.execute

    async def a_timer_fires_before_the_repeat(*args):
        await execute(*args)  # the start lands; its reply is lost
        current = await other.read("sms", PHONE)
        assert (await other.commit(current, Change(record="[2,null,1]", record_ttl=3600))).ok
        return await execute(*args)

    store.mux.execute = a_timer_fires_before_the_repeat
    try:
        assert (await store.commit(snapshot, Change(record="[2]", record_ttl=3600))).ok
    finally:
        await other.aclose()
    assert stored_record(redis_sync) == "2|[2,null,1]"


async def test_a_commit_with_a_sid_repeated_after_its_reply_was_lost_knows_it_landed(store, redis_sync):
    sid = twilio_sid(4)
    snapshot = await store.read("sms", PHONE, sid)
    losing_the_first_reply(store)
    assert (await store.commit(snapshot, Change(record="[2]", record_ttl=3600, message_sid=sid,
                                                replies=("Hi",)))).ok
    assert stored_record(redis_sync) == "1|[2]"


def answer_never_comes(store: Store):
    """COMMIT runs in Redis, but its answer is lost (Redis timed out for the caller); returns
    the real call, to put back."""
    commit = store._commit

    async def lost(call):
        await commit(call)
        raise RedisTimeoutError("Redis did not answer within 1 s")

    store._commit = lost
    return commit


async def test_a_commit_whose_answer_never_came_is_settled_by_repeating_it(store, redis_sync):
    for sid in (twilio_sid(5), None):
        snapshot = await store.read("sms", PHONE, sid)
        real = answer_never_comes(store)
        with pytest.raises(CommitUnknown) as unknown:
            await store.commit(snapshot, Change(record="[2]", record_ttl=3600, message_sid=sid, replies=("Hi",)))
        assert (await store.recommit(unknown.value)).ok  # it landed: repeating it says so, changes nothing
        assert (await store.recommit(unknown.value)).ok
        assert stored_record(redis_sync) == f"{int(snapshot.revision) + 1}|[2]"
        store._commit = real


async def test_a_commit_redis_could_not_be_reached_for_is_known_not_to_have_landed(store):
    snapshot = await store.read("sms", PHONE)
    unreachable = Store.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(RedisError) as failed:
            await unreachable.commit(snapshot, Change(record="[2]", record_ttl=3600))
        assert not isinstance(failed.value, CommitUnknown)  # a plain 503: nothing to settle
    finally:
        await unreachable.aclose()


async def test_a_commit_that_never_landed_is_settled_as_refused_once_another_landed(store, redis_url):
    """Another delivery of the same MessageSid (another attempt, another tag) landed instead."""
    sid, other = twilio_sid(6), await Store.open(redis_url)
    snapshot = await store.read("sms", PHONE, sid)
    change = Change(record="[2]", record_ttl=3600, message_sid=sid, replies=("Hi",))
    try:
        assert (await other.commit(snapshot, change)).ok
    finally:
        await other.aclose()
    never_sent = CommitUnknown(await capture_call(store, snapshot, change), OSError("never sent"))
    assert not (await store.recommit(never_sent)).ok


async def capture_call(store: Store, snapshot, change) -> tuple:
    """The call Store.commit would send for `change`, without sending it."""
    captured = []

    async def capture(call):
        captured.append(call)
        return [0, 0]

    real, store._commit = store._commit, capture
    try:
        await store.commit(snapshot, change)
    finally:
        store._commit = real
    return captured[0]


async def test_a_redelivery_claims_the_reply_unless_the_rest_api_did(store, redis_sync):
    sent_by_rest, answered = twilio_sid(7), twilio_sid(8)
    for sid in (sent_by_rest, answered):
        assert await commit_message(store, sid, ("Hi",))
    assert await store.claim("sms", PHONE, sent_by_rest, "rest:a1b2") == "rest:a1b2"
    assert (await store.read("sms", PHONE, sent_by_rest)).seen_replies == []  # the REST API sent it
    assert (await store.read("sms", PHONE, answered)).seen_replies == ["Hi"]  # claims it for TwiML
    assert (await store.claim("sms", PHONE, answered, "rest:c3d4")).startswith("twiml:")
    assert (await store.read("sms", PHONE, answered)).seen_replies == ["Hi"]
    assert 24 * 3600 < redis_sync.ttl(LAYOUT.claims("sms", PHONE)) <= DEDUPE_TTL


async def test_a_take_over_queues_the_reply_with_the_claim_once_and_knows_a_repeat_of_itself(
        store, redis_sync):
    """A redelivery's read claimed the reply for TwiML and its answer was lost: the REST API
    takes that claim over and queues its message in the same step. A repeat (its answer lost
    too) knows itself and queues nothing more; another read's tag takes nothing."""
    sid = twilio_sid(14)
    assert await commit_message(store, sid, ("Hi",))
    assert (await store.read("sms", PHONE, sid)).seen_replies == ["Hi"]  # claims it for TwiML
    claims = LAYOUT.claims("sms", PHONE)
    claim = redis_sync.hget(claims, sid_field(sid))
    lost = ReadUnknown("sms", PHONE, sid, claim.removeprefix("twiml:"), RedisTimeoutError("lost"))
    stranger = ReadUnknown("sms", PHONE, sid, "0000", RedisTimeoutError("lost"))
    assert await store.claimed_replies(stranger) is None
    assert await store.claimed_replies(lost) == ["Hi"]
    assert redis_sync.hget(claims, sid_field(sid)) == claim  # finding them takes nothing
    outbox = LAYOUT.outbox(LAYOUT.shard("sms", PHONE))
    assert not await store.take_over(stranger, ("OBstranger.0", 5.0, "{}"))
    assert redis_sync.exists(outbox + ":messages") == 0
    assert await store.take_over(lost, ("OBreply.0", 5.0, '{"reply": 1}'))
    assert await store.take_over(lost, ("OBreply.0", 9.0, '{"reply": 2}'))  # a repeat
    assert redis_sync.hget(claims, sid_field(sid)) == "rest:" + lost.claimer
    assert redis_sync.hgetall(outbox + ":messages") == {"OBreply.0": '{"reply": 1}'}
    assert redis_sync.zrange(outbox + ":due", 0, -1, withscores=True) == [("OBreply.0", 5.0)]
    assert await store.claimed_replies(lost) is None
    assert (await store.read("sms", PHONE, sid)).seen_replies == []  # the REST API sends it


async def test_a_later_redelivery_holds_the_twiml_claim_and_an_earlier_read_takes_nothing_over(
        store, redis_sync):
    sid = twilio_sid(15)
    assert await commit_message(store, sid, ("Hi",))
    claims = LAYOUT.claims("sms", PHONE)
    assert (await store.read("sms", PHONE, sid)).seen_replies == ["Hi"]
    earlier = redis_sync.hget(claims, sid_field(sid))
    lost = ReadUnknown("sms", PHONE, sid, earlier.removeprefix("twiml:"), RedisTimeoutError("lost"))
    assert (await store.read("sms", PHONE, sid)).seen_replies == ["Hi"]  # Twilio's next try answers
    later = redis_sync.hget(claims, sid_field(sid))
    assert later.startswith("twiml:") and later != earlier
    assert await store.claimed_replies(lost) is None
    assert not await store.take_over(lost, ("OBreply.0", 5.0, "{}"))
    assert redis_sync.hget(claims, sid_field(sid)) == later
    assert redis_sync.exists(LAYOUT.outbox(LAYOUT.shard("sms", PHONE)) + ":messages") == 0


async def test_a_redelivery_gets_its_replies_while_they_are_kept_whatever_came_since(store, redis_sync):
    """Twilio delivers a message again within its retry time, also after the respondent's next
    message was committed: the replies of every recent message are kept for REPLIES_TTL."""
    older, newer = twilio_sid(11), twilio_sid(12)
    assert await commit_message(store, older, ("First",))
    timer = await store.read("sms", PHONE)
    assert (await store.commit(timer, Change(record="[2]", record_ttl=3600))).ok  # a reminder between
    assert await commit_message(store, newer, ("Second",))
    assert (await store.read("sms", PHONE, older)).seen_replies == ["First"]
    assert (await store.read("sms", PHONE, newer)).seen_replies == ["Second"]
    assert REPLIES_TTL - 5 < redis_sync.ttl(LAYOUT.replies("sms", PHONE)) <= REPLIES_TTL


async def test_a_redelivery_after_its_replies_went_changes_nothing_and_claims_nothing(store, redis_sync):
    """Later (a replay), the message is still known by its mark: nothing changes and nothing
    is answered; the REST API can still claim the replies' delivery."""
    sid = twilio_sid(13)
    assert await commit_message(store, sid, ("Hi",))
    assert redis_sync.delete(LAYOUT.replies("sms", PHONE)) == 1  # its TTL ran out
    again = await store.read("sms", PHONE, sid)
    assert (again.seen_replies, again.replies_kept, again.revision) == ([], False, "1")
    assert not (await store.commit(again, Change(record="[2,null,1]", record_ttl=3600, message_sid=sid,
                                                 replies=("Hi",)))).ok
    assert redis_sync.exists(LAYOUT.claims("sms", PHONE)) == 0
    assert await store.claim("sms", PHONE, sid, "rest:a1b2") == "rest:a1b2"


async def test_an_open_conversation_at_rest_is_one_key(store, redis_sync):
    """The record and its marks share the conversation's key; the replies wait a minute beside
    it; the timer is a short member of the shared timer set."""
    start = await store.read("sms", PHONE)
    assert (await store.commit(start, Change(record="[2]", record_ttl=3600, due=1e9))).ok
    for n in range(3):
        assert await commit_message(store, twilio_sid(20 + n), (f"Question {n}",), due=1e9)
    assert sorted(redis_sync.scan_iter(match=LAYOUT.conversation("sms", PHONE) + ":*")) == [LAYOUT.respondent("sms", PHONE), LAYOUT.replies("sms", PHONE)]
    assert redis_sync.hlen(LAYOUT.replies("sms", PHONE)) == 3
    redis_sync.delete(LAYOUT.replies("sms", PHONE))  # a minute later
    assert list(redis_sync.scan_iter(match=LAYOUT.conversation("sms", PHONE) + ":*")) == [LAYOUT.respondent("sms", PHONE)]
    record, _, marks = redis_sync.get(LAYOUT.respondent("sms", PHONE)).partition(MARKS)
    assert record == "4|[2]" and len(marks) == 4 * MARK_LENGTH and marks.startswith(sid_mark(twilio_sid(22)))
    assert redis_sync.zrange(LAYOUT.timers(LAYOUT.shard("sms", PHONE)), 0, -1) == [timer_member("sms", PHONE)] == ["s" + PHONE]
    assert len(commit_tag()) == TAG_LENGTH


async def test_a_seen_message_cannot_commit_twice(store):
    sid = twilio_sid(3)
    snapshot = await store.read("sms", PHONE, sid)
    change = Change(record="[2]", record_ttl=3600, message_sid=sid, replies=("Hi",))
    assert (await store.commit(snapshot, change)).ok
    again = await store.read("sms", PHONE)
    assert not (await store.commit(again, change)).ok  # same revision read, but the sid is seen


async def test_a_conversation_remembers_its_newest_message_sids(store, redis_sync):
    """Each of the newest DEDUPE_KEEP commits leaves its mark, the newest REPLIES_KEPT their
    replies too; an older MessageSid is forgotten, and the keys stay as small as that."""
    sent = DEDUPE_KEEP + 5
    for n in range(sent):
        assert await commit_message(store, twilio_sid(n), (f"Reply to {n}",))
    for n in range(sent - REPLIES_KEPT, sent):
        assert (await store.read("sms", PHONE, twilio_sid(n))).seen_replies == [f"Reply to {n}"]
    for n in range(sent - DEDUPE_KEEP, sent - REPLIES_KEPT):
        assert (await store.read("sms", PHONE, twilio_sid(n))).seen_replies == []
    assert (await store.read("sms", PHONE, twilio_sid(sent - DEDUPE_KEEP - 1))).seen_replies is None
    assert len(redis_sync.get(LAYOUT.respondent("sms", PHONE)).partition(MARKS)[2]) == DEDUPE_KEEP * MARK_LENGTH
    assert redis_sync.hlen(LAYOUT.replies("sms", PHONE)) == REPLIES_KEPT
    assert redis_sync.object("encoding", LAYOUT.replies("sms", PHONE)) == "listpack"


async def test_a_conversation_stored_before_its_marks_carries_on(store, redis_sync):
    """A server upgraded under live conversations: a record without marks, the dedupe hashes
    of the layout before (replies, then the committing attempt's tag) and a timer member named
    by the conversation's tag are read as they were, and the next commit moves them over."""
    answered, tag = twilio_sid(30), "Rg24"  # the tags of the layout before had 4 characters
    current, previous = LAYOUT.dedupe("sms", PHONE)
    redis_sync.set(LAYOUT.respondent("sms", PHONE), "7|[2]", ex=3600)
    redis_sync.hset(current, sid_field(answered), "Next question\x1f" + tag)
    redis_sync.hset(previous, sid_field(twilio_sid(31)), '["a","b"]\x1fZz0V')
    redis_sync.expire(current, DEDUPE_TTL)
    redis_sync.zadd(LAYOUT.timers(LAYOUT.shard("sms", PHONE)), {f"sms:{PHONE}": 5.0})
    assert (await store.claim_due(10.0, 60.0, 10))[0] == [("sms", PHONE)]
    assert (await store.read("sms", PHONE, answered)).seen_replies == ["Next question"]
    assert (await store.read("sms", PHONE, twilio_sid(31))).seen_replies == ["a", "b"]
    redelivered = await store.read("sms", PHONE)
    assert not (await store.commit(redelivered, Change(record="[2,1]", record_ttl=3600, message_sid=answered,
                                                       replies=("Next question",)))).ok
    assert await commit_message(store, twilio_sid(32), ("Thanks",), record="[2,1]", due=20.0)
    assert stored_record(redis_sync) == "8|[2,1]"
    assert redis_sync.zrange(LAYOUT.timers(LAYOUT.shard("sms", PHONE)), 0, -1, withscores=True) == [("s" + PHONE, 20.0)]
    assert (await store.read("sms", PHONE, answered)).seen_replies == ["Next question"]  # until it expires


async def test_a_stored_record_without_a_revision_is_a_clear_error(store, redis_sync):
    redis_sync.set(LAYOUT.respondent("sms", PHONE), "[2]")  # no revision
    with pytest.raises(ValueError, match="not a stored respondent record"):
        await store.read("sms", PHONE)


async def test_a_late_status_callback_does_not_move_a_delivery_back(store):
    await store.record_delivery("sms", "+15551239901", "SM1", "queued", None, 1.0)
    await store.record_delivery("sms", "+15551239901", "SM1", "delivered", None, 3.0)
    await store.record_delivery("sms", "+15551239901", "SM1", "sent", None, 2.0)  # arrives late
    assert (await store.deliveries("sms", "+15551239901"))["SM1"]["status"] == "delivered"
    await store.record_delivery("sms", "+15551239901", "SM1", "read", None, 4.0)
    assert (await store.deliveries("sms", "+15551239901"))["SM1"]["status"] == "read"


async def test_a_delivery_status_never_replaces_one_of_a_higher_rank(store):
    """Every ordered pair of DELIVERY_RANKS's statuses, the later-ranked one noted first."""
    for first, first_rank in DELIVERY_RANKS.items():
        for then, then_rank in DELIVERY_RANKS.items():
            sid = f"SM-{first}-{then}"
            await store.record_delivery("sms", "+15551239902", sid, first, None, 1.0)
            await store.record_delivery("sms", "+15551239902", sid, then, 30003, 2.0)
            kept = first if first_rank > then_rank else then
            assert (await store.deliveries("sms", "+15551239902"))[sid]["status"] == kept, (first, then)


async def test_a_delivery_status_the_table_does_not_know_is_always_noted(store, redis_sync):
    await store.record_delivery("sms", "+15551239903", "SM1", "read", None, 1.0)
    await store.record_delivery("sms", "+15551239903", "SM1", "partially_delivered", None, 2.0)
    await store.record_delivery("sms", "+15551239903", "SM1", "accepted", None, 3.0)  # not outranked
    assert redis_sync.hget(LAYOUT.delivery("sms", "+15551239903"), "SM1") == (
        '{"status": "accepted", "error_code": null, "at": 3.0}')  # stored as before
