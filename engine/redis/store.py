"""The only module that knows Canvass's Redis keys, and the Lua scripts that change them.

Key layout (`{...}` is the Redis Cluster hash tag; T is a conversation tag such as
`sms:+15551234567` or `whatsapp:+15551234567`, S a survey id):

  cv:{T}:r            string "<revision>|<Respondent.dumps()>"; the revision (a whole number)
                            is bumped by every commit. TTL: the open session's expires_at + 30
                            days, or 30 days after the last write when no session is open;
                            refreshed on every write. An opted-out respondent is kept without
                            TTL: an opt-out must not be forgotten.
  cv:{T}:in           hash  the dedupe records: sid_field(inbound MessageSid) -> pack_replies(the
                            replies sent for it). TTL 25 h, refreshed by every write. When it
                            holds DEDUPE_KEEP records, COMMIT renames it (TTL and all) to
  cv:{T}:in:prev      hash  the generation before, replacing the one there. So a redelivered
                            MessageSid gets the identical reply and changes nothing for at
                            least 24 h, unless DEDUPE_KEEP newer messages of the conversation
                            came in since. Both stay compact listpack hashes (redis.conf).
  cv:{T}:c            list  the nonces of the conversation's latest NONCES_KEPT commits without
                            a MessageSid (starts, timers), newest first, so such a commit,
                            repeated after its reply was lost, knows it landed. TTL NONCE_TTL,
                            refreshed by every such commit.
  cv:{T}:dlv          hash  outbound MessageSid -> {"status", "error_code", "at"}; 30-day TTL,
                            refreshed by every status callback.
  cv:survey:{S}:responses  stream  one entry per closed session, field r = the response
                            record as JSON. Its consumer group ARCHIVE_GROUP is the archiver
                            (engine.records.archiver): an entry is XACKed only once the records
                            database has committed it, and the stream is trimmed (XTRIM MINID)
                            only below the oldest entry not yet acknowledged, never by length.
  cv:records:{optouts}  stream  one entry per opt-out or opt-in, field r = the event as JSON
                            (engine.records.optouts), written by the COMMIT that changed the
                            respondent and archived (group ARCHIVE_GROUP) like the responses.
  cv:records:{restored}  string  set once Redis's opt-outs were restored from the records
                            database; when Redis loses its data this goes too, and the archiver
                            restores them again.
  cv:survey:{S}:flow:<version>  hash  source, form, path of a compiled flow version, so any
                            worker (also after a restart) can rebuild the version a session is
                            pinned to. TTL: at least as long as the longest-lived respondent
                            record pinned to it (every commit extends it with EXPIRE ... GT),
                            and live versions are re-stored by the registry.
  cv:timers           zset  member T, score = when its next reminder or expiry is due.

Scripts: READ returns a respondent record, its revision and the dedupe record in one
round trip. COMMIT is the compare-and-set: it checks the revision is unchanged and the
inbound MessageSid unseen, then writes the respondent record, the dedupe record, the
response records, the flow-version TTL and the timer entry, all or nothing (a Lua
script runs atomically, so a crash or shutdown never leaves half a step).
CLAIM_DUE hands due timers to one worker with a lease: their score moves to now + lease,
so another worker sees them again only if this one dies before committing. RESCHEDULE
puts a timer back when a tick changed nothing (and drops it when the record is gone).
TRIM_ARCHIVED trims a record stream below the oldest entry the archiver has not acknowledged.

Redis Cluster: every key of one conversation shares the hash tag {T}, and every key
of one survey shares {S}. COMMIT, however, also touches cv:timers and the survey's
stream and flow key, which live in other slots; Cluster would refuse it (CROSSSLOT).
On one Redis (with AOF, see engine/redis/redis.conf) this is what keeps a step atomic. To
run on Cluster the commit must be split: a conversation-slot script that also appends
the stream and timer writes to an outbox under {T}, then an idempotent flush of that
outbox (response ids make replays harmless). That split is not built.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property

import redis.asyncio as redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.redis.multiplexer import Multiplexer

RESPONDENT_MARGIN = 30 * 86400  # kept this long after a session's expiry (or the last write)
DEDUPE_TTL = 25 * 3600
# Dedupe records kept per generation. A conversation forgets a MessageSid within 24 h only
# after 64 newer inbound messages: more than any survey conversation sends in a day, and
# small enough that both generations stay listpack hashes (hash-max-listpack-entries 128).
DEDUPE_KEEP = 64
DELIVERY_TTL = 30 * 86400
TIMERS = "cv:timers"
NONCE_TTL = 300  # seconds a sid-less commit can tell a repeat of itself (far above REDIS_TIMEOUT)
NONCES_KEPT = 16  # the latest sid-less commits of a conversation that can tell their repeats
REDIS_TIMEOUT = 1.0  # seconds: Redis being down must turn into a fast 503, not a hang

# The revision of the respondent record KEYS[1]: the number before its '|' ('0' when none).
_REVISION = """
local current = string.match(redis.call('GETRANGE', KEYS[1], 0, 20), '^(%d+)|') or '0'
"""

# KEYS: respondent, dedupe, previous dedupe. ARGV: the inbound sid's field ('' = none).
READ = """
local seen = false
if ARGV[1] ~= '' then
  seen = redis.call('HGET', KEYS[2], ARGV[1]) or redis.call('HGET', KEYS[3], ARGV[1])
end
return {redis.call('GET', KEYS[1]), seen}
"""

# KEYS: respondent, dedupe, previous dedupe, timers, flow source (the respondent key when
#       there is none), commit nonce, then one stream per record (each response's survey
#       stream, then the opt-out stream once per opt-out or opt-in event).
# ARGV: expected revision, record, record ttl ('0' = keep), sid field ('' = none), replies,
#       dedupe ttl, dedupe records kept, timer member, due ('' = none), flow ttl ('' = none),
#       (unused: streams are trimmed by the archiver only), nonce ('' = none), then one
#       record per stream key.
# A commit without a MessageSid (a start, a timer) carries a nonce instead: when its reply
# was lost and the call is repeated, the nonce tells it that it already landed.
COMMIT = _REVISION + """
if current ~= ARGV[1] then
  if ARGV[12] ~= '' and redis.call('LPOS', KEYS[6], ARGV[12]) then
    -- it landed; its flow_missing answer was lost with the reply, so work it out again
    local gone = ARGV[10] ~= '' and redis.call('EXISTS', KEYS[5]) == 0
    return {tonumber(current), gone and 1 or 0}
  end
  return {0, 0}
end
local sid = ARGV[4]
if sid ~= '' and (redis.call('HEXISTS', KEYS[2], sid) == 1 or redis.call('HEXISTS', KEYS[3], sid) == 1) then
  return {0, 0}
end
local revision = tonumber(current) + 1
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], revision .. '|' .. ARGV[2])
else
  redis.call('SET', KEYS[1], revision .. '|' .. ARGV[2], 'EX', ARGV[3])
end
if sid ~= '' then
  redis.call('HSET', KEYS[2], sid, ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then redis.call('RENAME', KEYS[2], KEYS[3]) end
end
if ARGV[9] == '' then redis.call('ZREM', KEYS[4], ARGV[8]) else redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8]) end
local flow_missing = 0
if ARGV[10] ~= '' and redis.call('EXPIRE', KEYS[5], ARGV[10], 'GT') == 0 and redis.call('EXISTS', KEYS[5]) == 0 then
  flow_missing = 1
end
if ARGV[12] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[12])
  redis.call('LTRIM', KEYS[6], 0, NONCES_KEPT - 1)
  redis.call('EXPIRE', KEYS[6], NONCE_TTL)
end
for i = 7, #KEYS do
  redis.call('XADD', KEYS[i], '*', 'r', ARGV[i + 6])
end
return {revision, flow_missing}
""".replace("NONCE_TTL", str(NONCE_TTL)).replace("NONCES_KEPT", str(NONCES_KEPT))

# Twilio's status callbacks may arrive out of order: a late `sent` must not overwrite
# `delivered`. KEYS: deliveries. ARGV: MessageSid, record (JSON), its status's rank, ttl.
RECORD_DELIVERY = """
local ranks = {accepted=0, scheduled=0, queued=0, sending=1, sent=2, delivered=3, undelivered=3,
               failed=3, read=4}
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local rank = ranks[cjson.decode(old)['status']]
  if rank and rank > tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
DELIVERY_RANKS = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3,
                  "undelivered": 3, "failed": 3, "read": 4}

CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
"""

# KEYS: respondent, timers. ARGV: expected revision, timer member, due ('' = none).
RESCHEDULE = _REVISION + """
if current ~= ARGV[1] then return 0 end
if ARGV[3] == '' or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
return 1
"""


def conversation_tag(channel: str, phone: str) -> str:
    return f"{channel}:{phone}"


def split_tag(tag: str) -> tuple[str, str]:
    channel, _, phone = tag.partition(":")
    return channel, phone


def respondent_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:r"


def dedupe_keys(channel: str, phone: str) -> tuple[str, str]:
    """The conversation's dedupe hash and the one a generation older."""
    inbound = f"cv:{{{conversation_tag(channel, phone)}}}:in"
    return inbound, inbound + ":prev"


_TWILIO_SID = re.compile(r"SM[0-9a-f]{32}")


def sid_field(message_sid: str) -> str:
    """A MessageSid as its dedupe hash field: Twilio's "SM" + 32 hex digits as the 22 base64
    characters of its 16 bytes; any other sid as ':' + itself (':' is not a base64 character,
    so no two sids share a field)."""
    if _TWILIO_SID.fullmatch(message_sid):
        return binascii.b2a_base64(bytes.fromhex(message_sid[2:]), newline=False)[:22].decode()
    return ":" + message_sid


def pack_replies(replies: tuple[str, ...] | list[str]) -> str:
    """The replies to one inbound message as stored: a lone reply as itself unless it starts
    with '[', else a JSON list."""
    if len(replies) == 1 and not replies[0].startswith("["):
        return replies[0]
    return json.dumps(list(replies), separators=(",", ":"), ensure_ascii=False)


def unpack_replies(stored: str) -> list[str]:
    return json.loads(stored) if stored.startswith("[") else [stored]


def split_record(stored: str | None) -> tuple[str | None, str]:
    """(respondent record, revision) of a stored "<revision>|<record>"; (None, "0") for none."""
    if stored is None:
        return None, "0"
    revision, bar, record = stored.partition("|")
    if not (bar and revision.isascii() and revision.isdigit()):
        raise ValueError(f"not a stored respondent record: {stored[:80]}")
    return record, revision


def nonce_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:c"


def delivery_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:dlv"


def responses_key(survey: str) -> str:
    return f"cv:survey:{{{survey}}}:responses"


def flow_key(survey: str, version: str) -> str:
    return f"cv:survey:{{{survey}}}:flow:{version}"


def connect(url: str, max_connections: int = 64) -> redis.Redis:
    """A pooled client whose every command fails within REDIS_TIMEOUT instead of waiting.

    For the rarer commands (Store's scripts go through the multiplexer). A broken connection
    (Redis restarted, so every pooled connection is stale) is retried once on a fresh one; a
    timeout is not retried, so an unresponsive Redis costs one REDIS_TIMEOUT. The commands
    sent through here are reads and idempotent writes, safe to repeat."""
    # A blocking pool: past max_connections commands wait (bounded by REDIS_TIMEOUT) for a
    # free connection instead of failing at once, which would turn a busy moment into 503s.
    pool = BlockingConnectionPool.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=None,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=max_connections, timeout=REDIS_TIMEOUT, decode_responses=True,
    )
    return TimedRedis.from_pool(pool)


async def _bounded(command):
    """Await a Redis command for at most REDIS_TIMEOUT; Redis's TimeoutError (a 503) after that.

    redis-py's own socket_timeout wraps every write in asyncio.wait_for, which on Python 3.11
    starts a Task per command; one timer around the whole command costs less and also bounds
    connecting and waiting for the pool."""
    try:
        async with asyncio.timeout(REDIS_TIMEOUT):
            return await command
    except TimeoutError:
        raise RedisTimeoutError(f"Redis did not answer within {REDIS_TIMEOUT:g} s") from None


class TimedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list:
        return await _bounded(super().execute(raise_on_error))


class Script:
    """A Lua script run by EVALSHA through the multiplexer (loaded on NOSCRIPT)."""

    def __init__(self, mux: Multiplexer, text: str):
        self.mux, self.text = mux, text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, keys: list | tuple = (), args: list | tuple = ()):
        try:
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted (or flushed its scripts) since the last call
            await self.mux.execute("SCRIPT", "LOAD", self.text)
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)


class TimedRedis(redis.Redis):
    """The client `connect` makes: every command and pipeline bounded by REDIS_TIMEOUT."""

    async def execute_command(self, *args, **options):
        return await _bounded(super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


@dataclass(frozen=True)
class Snapshot:
    """One conversation as read: the record (None when new), its revision, and the
    replies already sent for the inbound MessageSid (None when it is new)."""

    channel: str
    phone: str
    record: str | None
    revision: str
    seen_replies: list[str] | None


@dataclass(frozen=True)
class Change:
    """What one step writes. `due` is the next timer (None: no timer); `pinned` the
    (survey, version) the open session runs on; `record_ttl` 0 keeps the record forever."""

    record: str
    record_ttl: int
    due: float | None = None
    pinned: tuple[str, str] | None = None
    responses: tuple[dict, ...] = ()
    opt_outs: tuple[dict, ...] = ()  # opt-out and opt-in events (engine.records.optouts)
    message_sid: str | None = None
    replies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Committed:
    ok: bool  # False: someone else changed the conversation first; read again
    flow_missing: bool = False  # the pinned version's source was not in Redis


class Store:
    """Canvass's Redis. The scripts, which every webhook and timer runs, go through one
    pipelined connection (engine.redis.multiplexer); the rarer commands (exports, the admin API,
    flow sources) through redis-py's pool."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self.mux = Multiplexer.like(client, REDIS_TIMEOUT)
        self._read = Script(self.mux, READ)
        self._commit = Script(self.mux, COMMIT)
        self._claim = Script(self.mux, CLAIM_DUE)
        self._reschedule = Script(self.mux, RESCHEDULE)
        self._record_delivery = Script(self.mux, RECORD_DELIVERY)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(connect(url))

    async def aclose(self) -> None:
        await self.mux.aclose()
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # ------------------------------------------------------------ conversations

    async def read(self, channel: str, phone: str, message_sid: str | None = None) -> Snapshot:
        stored, seen = await self._read(
            keys=[respondent_key(channel, phone), *dedupe_keys(channel, phone)],
            args=[sid_field(message_sid) if message_sid else ""])
        record, revision = split_record(stored)
        replies = unpack_replies(seen) if seen is not None else None
        return Snapshot(channel, phone, record, revision, replies)

    async def commit(self, snapshot: Snapshot, change: Change) -> Committed:
        channel, phone = snapshot.channel, snapshot.phone
        record_key = respondent_key(channel, phone)
        keys = [
            record_key,
            *dedupe_keys(channel, phone),
            TIMERS,
            flow_key(*change.pinned) if change.pinned else record_key,
            nonce_key(channel, phone),
            *(responses_key(response["survey"]) for response in change.responses),
            *(OPT_OUTS for _ in change.opt_outs),
        ]
        args = [
            snapshot.revision,
            change.record,
            str(change.record_ttl),
            sid_field(change.message_sid) if change.message_sid else "",
            pack_replies(change.replies) if change.message_sid else "",
            str(DEDUPE_TTL),
            str(DEDUPE_KEEP),
            conversation_tag(channel, phone),
            repr(change.due) if change.due is not None else "",
            str(max(1, change.record_ttl or RESPONDENT_MARGIN)) if change.pinned else "",
            "",
            "" if change.message_sid else os.urandom(8).hex(),
            *(json.dumps(response, separators=(",", ":")) for response in change.responses),
            *(json.dumps(event, separators=(",", ":")) for event in change.opt_outs),
        ]
        revision, flow_missing = await self._commit(keys=keys, args=args)
        return Committed(ok=revision != 0, flow_missing=bool(flow_missing))

    async def records(self, phone: str, channels: tuple[str, ...]) -> dict[str, str | None]:
        """The stored respondent record of `phone` on each channel (None where there is none)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.get(respondent_key(channel, phone))
            values = await pipe.execute()
        return {channel: split_record(stored)[0] for channel, stored in zip(channels, values, strict=True)}

    # ------------------------------------------------------------ timers

    async def claim_due(self, now: float, lease: float, limit: int) -> list[tuple[str, str]]:
        members = await self._claim(keys=[TIMERS], args=[repr(now), repr(lease), str(limit)])
        return [split_tag(member) for member in members]

    async def reschedule(self, snapshot: Snapshot, due: float | None) -> None:
        await self._reschedule(
            keys=[respondent_key(snapshot.channel, snapshot.phone), TIMERS],
            args=[snapshot.revision, conversation_tag(snapshot.channel, snapshot.phone),
                  repr(due) if due is not None else ""])

    # ------------------------------------------------------------ delivery statuses

    async def record_delivery(self, channel: str, phone: str, message_sid: str, status: str,
                              error_code: int | None, at: float) -> None:
        """Note a message's delivery status, unless a later one is already noted."""
        value = json.dumps({"status": status, "error_code": error_code, "at": at})
        rank = DELIVERY_RANKS.get(status, 99)  # a status this table does not know is kept
        await self._record_delivery(keys=[delivery_key(channel, phone)],
                                    args=[message_sid, value, str(rank), str(DELIVERY_TTL)])

    async def deliveries(self, channel: str, phone: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(delivery_key(channel, phone))
        return {sid: json.loads(value) for sid, value in raw.items()}

    # ------------------------------------------------------------ flow sources

    async def save_flow(self, survey: str, version: str, source: str, form: str, path: str,
                        ttl: int) -> None:
        """Store a version's source; an existing longer TTL (a pinned session's) is kept."""
        key = flow_key(survey, version)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"source": source, "form": form, "path": path})
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
            await pipe.execute()

    async def load_flow(self, survey: str, version: str) -> dict[str, str] | None:
        stored = await self.redis.hgetall(flow_key(survey, version))
        return stored or None

    # ------------------------------------------------------------ responses

    async def has_responses(self, survey: str) -> bool:
        return bool(await self.redis.exists(responses_key(survey)))

    async def responses(self, survey: str, until: str = "+", batch: int = 500):
        """(entry id, response record) of a survey, oldest first, up to entry `until`."""
        key, start = responses_key(survey), "-"
        if until == "-":
            return
        while True:
            entries = await self.redis.xrange(key, min=start, max=until, count=batch)
            for entry_id, fields in entries:
                yield entry_id, json.loads(fields["r"])
            if len(entries) < batch:
                return
            start = "(" + entries[-1][0]

    # ------------------------------------------------------------ archiving (engine.records)

    async def archive_claim(self, stream: str, consumer: str, count: int,
                            idle_ms: int) -> list[tuple[str, dict | None]]:
        """Up to `count` entries of `stream` for `consumer` of ARCHIVE_GROUP to archive: first
        its own unacknowledged ones (its database transaction failed), then those another
        consumer left unacknowledged for `idle_ms` (it died), then new ones. (entry id,
        record); None for an entry gone from the stream (it can only be acknowledged). The group is created when missing, from the
        start of the stream, so a stream made before the group (or after Redis lost its data)
        is archived whole."""
        try:
            return await self._archive_claim(stream, consumer, count, idle_ms)
        except ResponseError as err:
            if not str(err).startswith("NOGROUP"):
                raise
        try:
            await self.redis.xgroup_create(stream, ARCHIVE_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if not str(err).startswith("BUSYGROUP"):  # another worker made it meanwhile
                raise
        return await self._archive_claim(stream, consumer, count, idle_ms)

    async def _archive_claim(self, stream: str, consumer: str, count: int, idle_ms: int):
        entries = await self._read_group(stream, consumer, "0", count)  # its own pending ones
        if len(entries) < count:
            claimed = await self.redis.xautoclaim(stream, ARCHIVE_GROUP, consumer, idle_ms, "0-0",
                                                  count=count - len(entries))
            entries += claimed[1]
        if len(entries) < count:
            entries += await self._read_group(stream, consumer, ">", count - len(entries))
        return [(entry_id, json.loads(fields["r"]) if fields else None)
                for entry_id, fields in entries]

    async def _read_group(self, stream: str, consumer: str, after: str, count: int) -> list:
        read = await self.redis.xreadgroup(ARCHIVE_GROUP, consumer, {stream: after}, count=count)
        return [entry for _, entries in (read.items() if isinstance(read, dict) else read or ())
                for entry in entries]

    async def archive_ack(self, stream: str, entry_ids: list[str]) -> None:
        """The entries are in the records database: the group need not hand them out again."""
        if entry_ids:
            await self.redis.xack(stream, ARCHIVE_GROUP, *entry_ids)

    async def archive_trim(self, stream: str) -> int:
        """Drop the entries below the oldest one not archived yet; how many went."""
        return await self._trim_archived(keys=[stream], args=[ARCHIVE_GROUP])

    async def archive_forget_consumers(self, stream: str, idle_ms: int) -> int:
        """Remove from ARCHIVE_GROUP the consumers idle for `idle_ms` with nothing pending
        (processes that stopped); how many went."""
        try:
            consumers = await self.redis.xinfo_consumers(stream, ARCHIVE_GROUP)
        except ResponseError:  # no stream or no group yet
            return 0
        gone = [c["name"] for c in consumers if not c["pending"] and c["idle"] >= idle_ms]
        for name in gone:
            await self.redis.xgroup_delconsumer(stream, ARCHIVE_GROUP, name)
        return len(gone)

    async def survey_streams(self) -> set[str]:
        """The ids of every survey with a response stream (a full SCAN: rare, not per request)."""
        found = set()
        async for key in self.redis.scan_iter(match=responses_key("*"), count=1000, _type="stream"):
            found.add(key[len(responses_key("")) - len(RESPONSES_SUFFIX):-len(RESPONSES_SUFFIX)])
        return found

    async def restore_opt_outs(self, respondents: list[tuple[str, str, str]]) -> int:
        """Store (channel, phone, respondent record) where Redis holds no record for that
        conversation; how many were stored. A record a commit wrote is never overwritten,
        and a commit that read "no record" before this fails its revision check and reads
        this one."""
        if not respondents:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel, phone, record in respondents:
                pipe.set(respondent_key(channel, phone), "1|" + record, nx=True)
            stored = await pipe.execute()
        return sum(1 for done in stored if done)

    async def opt_outs_restored(self) -> bool:
        return bool(await self.redis.exists(RESTORED))

    async def mark_opt_outs_restored(self) -> None:
        await self.redis.set(RESTORED, "1")

    @cached_property
    def _trim_archived(self) -> Script:
        return Script(self.mux, TRIM_ARCHIVED)


ARCHIVE_GROUP = "archiver"
OPT_OUTS = "cv:records:{optouts}"
RESTORED = "cv:records:{restored}"
RESPONSES_SUFFIX = "}:responses"

# KEYS: a record stream. ARGV: the archiver's group. Trims below the oldest entry the group
# has not acknowledged (the oldest pending one, else the one after the last delivered), in
# one step, so no entry read or acknowledged meanwhile is miscounted. Without the group
# nothing was archived: nothing goes.
TRIM_ARCHIVED = """
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return 0 end
local last
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then last = info['last-delivered-id'] end
end
if not last then return 0 end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local below
if pending[1] > 0 then
  below = pending[2]
else
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  below = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', below)
"""
