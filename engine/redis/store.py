"""The only module that knows Canvass's Redis keys, and the Lua scripts that change them.

Key layout (`{...}` is the Redis Cluster hash tag; T is a conversation tag such as
`sms:+15551234567` or `whatsapp:+15551234567`, S a survey id):

  cv:{T}:r            string  the conversation: what Canvass keeps for an open one at rest, in one key
                            (a key costs about 100 bytes in Redis's tables before its value):
                            "<revision>|<Respondent.dumps()>" RS <marks>, RS being the character
                            0x1e (the record is JSON, which escapes it; a record written before
                            marks were is the first part alone). revision: a whole number, bumped
                            by every commit. marks: one per commit, MARK_LENGTH base64 characters
                            each, newest first, the newest DEDUPE_KEEP of them: an inbound
                            message's is sid_mark(its MessageSid) (48 bits of its hash) and the
                            committing attempt's tag (TAG_LENGTH), so a commit repeated after its
                            answer was lost tells its own mark from a redelivery's; a commit
                            without a MessageSid (a start, a timer) leaves a nonce_mark() (66
                            random bits), by which its repeat knows it landed. A redelivered
                            MessageSid changes nothing while its mark is kept: while it is among
                            the conversation's newest DEDUPE_KEEP commits, as long as the record
                            lives (at least a day). TTL, set by every write from the core's
                            policy.keep_for: the open session's expires_at + 30 days; 30 days
                            after the last write for a number with a survey behind it; one day
                            for a stranger (nothing but when it was last told it is in no
                            survey). An opted-out respondent is kept without TTL: an opt-out
                            must not be forgotten.
  cv:{T}:replies      hash  mark -> pack_replies(the replies committed for that inbound message), for
                            the newest REPLIES_KEPT marks at most; TTL REPLIES_TTL, set by every
                            write. A redelivery of a message whose replies are kept gets them
                            (READ claims their delivery, see cv:{T}:claims). Twilio delivers a
                            webhook again only when the first delivery got no answer, and within
                            its retry time (its retries' 15 s, then its fallback URL's), so every
                            redelivery that can still carry replies to the respondent comes while
                            they are kept, whether or not newer messages were committed since. A
                            redelivery after that (a replay) changes nothing and is answered with
                            nothing: READ claims nothing, so when the commit's own request could
                            not answer, its replies still go through the REST API
                            (engine.runtime.settling). At rest an open conversation has none.
  cv:{T}:in, cv:{T}:in:prev  hash  the dedupe records of the layout before (MessageSid field ->
                            replies, 0x1f, the attempt's tag), no longer written: READ, COMMIT
                            and TAKE_OVER still read them, so a server upgraded under live
                            conversations knows their messages until these expire (25 h).
                            (Their cv:{T}:c, the nonces of the layout before, expire in 5 min.)
  cv:{T}:claims       hash  sid_field(inbound MessageSid) -> who delivers the replies committed for
                            it: "twiml:<tag>" (a redelivery's READ, tagged, found it committed and
                            answers with them; TAKE_OVER gives the REST API the claim of a READ
                            whose answer never reached its request, and queues its message) or
                            "rest:<tag>" (sent through Twilio's REST API by the claimer with that
                            tag, after the delivery that committed it could not answer). The
                            first to claim wins (READ and CLAIM), so a reply goes exactly once;
                            but a later READ makes a "twiml:" claim its own (Twilio delivers
                            again only when no answer came, so the later request is the one
                            that answers, and the earlier read's TAKE_OVER finds the claim
                            gone). Written only on those rare paths; TTL DEDUPE_TTL.
  cv:{T}:dlv          hash  outbound MessageSid -> {"status", "error_code", "at"} (and "d": the
                            distribution it invited for, if any): `queued` noted by OUTBOX_FINISH
                            as Twilio takes the message, then each status callback's
                            (RECORD_DELIVERY; both through delivery.lua's note_delivery); 30-day
                            TTL, refreshed by every note.
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
  cv:timers           zset  member timer_member(T): the channel's letter and the phone ("s+15551234567";
                            Redis's smallest allocation, where the tag takes the next one), or T for
                            other channels; score = when its next reminder or expiry is due. The
                            member the layout before wrote (T itself) is read alike and removed by
                            the conversation's next COMMIT or RESCHEDULE.

The outbox: every message the server sends on its own initiative (a start's first message,
a reminder, a distribution's invitation, a reply its webhook could not carry), all under the
hash tag {outbox} (engine.runtime.outbox drains it; engine/redis/outbox.py calls its scripts):
  cv:outbox:{outbox}:messages  hash  id -> the message as JSON (engine.redis.outbox.Message:
                            kind, channel, to, origin, parts, survey, distribution...), written
                            by the COMMIT that causes it (or by ENQUEUE for a late reply), so a
                            message exists exactly when its cause was committed.
  cv:outbox:{outbox}:due    zset  id -> when it may go (a start's own message is held for its
                            worker for OUTBOX_HOLD seconds; quiet hours and retries push it
                            later); while a sender holds it, when that sender's lease ends.
  cv:outbox:{outbox}:state  hash  id -> "<phase>|<part>|<tries>|<sender tag>|<sids so far>":
                            phase q (queued; the default when absent), c (claimed by the sender
                            with that tag), s (the part is being sent: Twilio was asked). A
                            message found in phase s by a later claim is unknown.
  cv:outbox:{outbox}:unknown  hash  id -> {"message", "part", "sids", "reason", "at"}: messages
                            whose sending may or may not have reached Twilio. Never resent on
                            their own; listed by GET /admin/outbox, resent by OUTBOX_RESEND
                            when an operator asks.
  cv:outbox:{outbox}:claimed:<tag>  set  the ids the sender with that tag claimed and may still
                            hold (each claim drops those it no longer holds), so that a claim
                            after lost answers takes back every one of them. TTL the lease.
  cv:outbox:{outbox}:paced:<sender>  zset  the requests of that sender address (message:part:try)
                            counted in its pace, scored (Redis time, ms) with when Twilio
                            answered them, or while they wait for the answer, with a time-out
                            ahead; OUTBOX_BEGIN lets a request go only while fewer than the rate
                            are within a window of now. TTL a window and a time-out.
  cv:outbox:{outbox}:paced-last:<sender>  string  when its last request was let go (requests of a
                            sender are spaced by half the even spacing). TTL a window.
  cv:records:{deliveries}  stream  one entry per outcome of a distribution's invitation (sent,
                            failed, unknown: OUTBOX_FINISH / OUTBOX_CLAIM) and per delivery
                            status of one (RECORD_DELIVERY, and `queued` from OUTBOX_FINISH), field r = JSON {distribution,
                            channel, phone, state, sid, error_code, reason, at}; archived (group
                            ARCHIVE_GROUP) into the recipients of the distribution.

The survey's web pages (engine.runtime.web):
  cv:web:secret       string  the random key every worker signs the web forms' CSRF tokens with,
                            set once by the first worker that needs it (SET NX). No TTL. Lost
                            with Redis's data, it is made anew: forms shown before then are
                            refused once (403) and shown again.

Distributions (the records database holds them; Redis only says who works on one now):
  cv:distributions:{distributions}:lease:<id>  string  the tag of the worker inviting that
                            distribution's recipients, so one worker at a time does (each
                            invitation is safe to repeat anyway). TTL DISTRIBUTION_LEASE,
                            renewed by each round of its worker.
  cv:distributions:{distributions}:claim:<digest>:<phone>  string  the distribution sending the
                            link invitation of that text digest to that number now, so two
                            distributions of the same text in two workers cannot both send it
                            before either's recipient state is in the records database (where
                            duplicate suppression looks). TTL the lease; dropped once the state
                            is written (Store.claim_invitation, release_invitations). With the
                            digest `frequency`: the distribution checking the contact-frequency
                            rule for that number and inviting it (engine.runtime.distributor).

The fleet (every worker of every server sharing this Redis), all under the hash tag {fleet}:
  cv:fleet:{fleet}:live  hash  generation (a whole number, bumped by every announced
                            reload), flows (JSON {survey id: version}: the live set every
                            worker runs; the sources are the cv:survey:{S}:flow:<version>
                            keys), by (the worker that announced it), at (Redis time). No
                            TTL: it is the fact of which versions are live.
  cv:fleet:{fleet}:reloads  pub/sub channel: the generation just announced. A worker that
                            misses one catches up from the live hash at its next heartbeat.
  cv:fleet:{fleet}:workers  hash  worker id -> JSON {beat (Redis time), generation it runs,
                            refused (the latest generation it could not compile, 0 = none),
                            error}. Written by every heartbeat (FLEET_BEAT) and after each
                            reload taken; entries older than FLEET_TTL are dropped by the
                            next heartbeat of any worker. A reload waits for the workers
                            listed here to reach its generation. TTL 1 day, refreshed by
                            every heartbeat.
  cv:fleet:{fleet}:statuses  hash  survey id -> its status when not active ("paused" or "closed":
                            engine.policy); an active survey has no field. Read by each worker
                            at most once a second (Service.flows), so every worker sees a
                            change within a second. No TTL: an operator's decision, kept (AOF) until
                            changed.
  cv:fleet:{fleet}:metrics:<server>  hash  worker pid -> "<time>|<JSON of its metric samples>", for
                            the workers of one `canvass serve --workers N` (server = host:pid
                            of the supervisor), so any worker's /metrics shows them all. TTL
                            FLEET_TTL, refreshed by every heartbeat; a stopping worker drops
                            its own.

The local sandbox (only in insecure local mode without Twilio credentials: Settings.sandbox):
  cv:sandbox:{sandbox}:messages  list  the messages the server sent on its own initiative,
                            one JSON object each ({"sid" ("SB" + 32 hex), "channel", "to",
                            "from", "body" or "content_sid" and "content_variables", "at"}),
                            oldest first, of every number (GET /admin/sandbox/messages lists
                            them all or one number's). Capped at the newest SANDBOX_KEEP;
                            TTL SANDBOX_TTL, refreshed by every message.

Scripts (engine/redis/scripts/*.lua, one file each; their header format is described in
engine/redis/scripts/__init__.py; conversation.lua, included, parses cv:{T}:r): READ returns a
respondent record, its revision and whether the MessageSid was seen (with its replies) in one
round trip. COMMIT is the compare-and-set: it checks the revision is unchanged and the
inbound MessageSid unseen, then writes the respondent record with its mark, the replies,
the response records, the flow-version TTL and the timer entry, all or nothing (a
Lua script runs atomically, so a crash or shutdown never leaves half a step).
CLAIM_DUE hands due timers to one worker with a lease: their score moves to now + lease,
so another worker sees them again only if this one dies before committing. RESCHEDULE
puts a timer back when a tick changed nothing (and drops it when the record is gone).
CLAIM decides who delivers the replies of an inbound message whose commit landed after its
webhook answered without them (see cv:{T}:claims), and queues the REST API's message of them
when it wins; TAKE_OVER hands the REST API the claim of a READ whose answer was lost, queueing
its message in the same step. RECORD_DELIVERY notes a delivery status unless the one noted outranks it (DELIVERY_RANKS).
Each is called with a typed call below (CommitCall...), whose fields are the script's KEYS
and ARGV in the header's order; the limits (DEDUPE_KEEP, REPLIES_TTL...) travel as ARGV.
TRIM_ARCHIVED trims a record stream below the oldest entry the archiver has not acknowledged.

Redis Cluster (Store.open asks the node REDIS_URL names; engine.redis.cluster): a script may
touch keys of one slot only, so there the keys above live where ClusterLayout puts them. The
conversations are spread over SHARDS shards, each one slot: a conversation's own keys carry
its shard's hash tag (cv:{<shard>}:<T>:r ...), and so do the shard's timers, outbox, record
streams and flow pins, which the scripts above write beside the conversation. Every commit
is then one script on one slot, atomic as on one Redis, and every worker drains every
shard. The fleet's keys share {fleet}, the pace of a sender {outbox}, the distributions'
{distributions}: each of their scripts touches one slot; PUBLISH reaches every node's
subscribers. One Redis keeps the layout above (Layout): nothing to move when upgrading.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import hashlib
import heapq
import json
import os
import random
import re
import secrets
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import hiredis
import redis.asyncio as redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.policy import KEEP_AFTER
from engine.redis.cluster import cluster_client, is_cluster_node
from engine.redis.multiplexer import Multiplexer, NotSent, bounded
from engine.redis.scripts import Lua

RESPONDENT_MARGIN = KEEP_AFTER  # a record is kept this long after its session's expiry
DEDUPE_TTL = 25 * 3600  # a claim's (cv:{T}:claims), and a dedupe hash's of the layout before
# Marks kept per conversation (see cv:{T}:r): a conversation forgets a MessageSid only after
# 64 newer commits, more than any survey conversation makes in a day.
DEDUPE_KEEP = 64
MARK_LENGTH = 11  # characters of a mark (conversation.lua's MARK)
SID_MARK_LENGTH = 8  # of them, those that name the MessageSid: 48 bits of its hash
# Seconds the replies to an inbound message are kept for a redelivery (cv:{T}:replies): Twilio
# delivers a webhook again only within its retries' 15 s and then its fallback URL's 15 s.
REPLIES_TTL = 60
REPLIES_KEPT = 16  # at most the replies of the conversation's newest REPLIES_KEPT commits
DELIVERY_TTL = 30 * 86400
TIMERS = "cv:timers"
# Seconds a commit repeated after its answer was lost is sure to know whether it landed: its
# mark is among the conversation's newest DEDUPE_KEEP commits far longer than that.
NONCE_TTL = 300
REDIS_TIMEOUT = 1.0  # seconds: Redis being down must turn into a fast 503, not a hang
# seconds a COMMIT repeated after its answer was lost may wait: a slow Redis still answers it
# within the webhook (1 s + 3 s, far below Twilio's 15 s); one that refuses connections is
# given up on at once
PATIENT_TIMEOUT = 3.0
SANDBOX = "cv:sandbox:{sandbox}:messages"
OUTBOX_MESSAGES = "cv:outbox:{outbox}:messages"
OUTBOX_DUE = "cv:outbox:{outbox}:due"
OUTBOX_STATE = "cv:outbox:{outbox}:state"
OUTBOX_UNKNOWN = "cv:outbox:{outbox}:unknown"
SANDBOX_KEEP = 1000  # sandbox messages kept: a developer's session, not an archive
SANDBOX_TTL = 7 * 86400
WEB_SECRET = "cv:web:secret"
TAG_LENGTH = 3  # base64 characters: 18 random bits tell two deliveries of one MessageSid apart
MARKS = "\x1e"  # after the record: its marks (the record is JSON, which escapes C0 controls)
# The channels whose timer members are the channel's letter and the phone (see cv:timers)
TIMER_CODES = {"sms": "s", "whatsapp": "w"}
TIMER_CHANNELS = {code: channel for channel, code in TIMER_CODES.items()}

# How far along a message's delivery each status Twilio reports is. Its status callbacks may
# arrive out of order; a status never replaces one of a higher rank (a late `sent` must not
# overwrite `delivered`). A status this table does not know is always recorded.
DELIVERY_RANKS = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "delivered": 3,
                  "undelivered": 3, "failed": 3, "read": 4}
# For each status, the statuses it must not replace: what RECORD_DELIVERY is given.
OUTRANKING = {status: tuple(other for other, higher in DELIVERY_RANKS.items() if higher > rank)
              for status, rank in DELIVERY_RANKS.items()}


def conversation_tag(channel: str, phone: str) -> str:
    return f"{channel}:{phone}"


def split_tag(tag: str) -> tuple[str, str]:
    channel, _, phone = tag.partition(":")
    return channel, phone


def respondent_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:r"


def replies_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:replies"


def dedupe_keys(channel: str, phone: str) -> tuple[str, str]:
    """The dedupe hashes of the layout before (cv:{T}:in and cv:{T}:in:prev), read until they
    expire: a server upgraded under live conversations still knows the messages they hold."""
    inbound = f"cv:{{{conversation_tag(channel, phone)}}}:in"
    return inbound, inbound + ":prev"


_TWILIO_SID = re.compile(r"SM[0-9a-f]{32}")


def sid_field(message_sid: str) -> str:
    """A MessageSid as its field of cv:{T}:claims (and of the dedupe hashes of the layout
    before): Twilio's "SM" + 32 hex digits as the 22 base64 characters of its 16 bytes; any other sid as ':' + itself (':' is not a base64 character,
    so no two sids share a field)."""
    if _TWILIO_SID.fullmatch(message_sid):
        return binascii.b2a_base64(bytes.fromhex(message_sid[2:]), newline=False)[:22].decode()
    return ":" + message_sid


def sid_mark(message_sid: str) -> str:
    """The part of a mark that names a MessageSid (see cv:{T}:r): SID_MARK_LENGTH base64
    characters of its BLAKE2b hash, so that every sid, Twilio's or not, names itself alike."""
    digest = hashlib.blake2b(message_sid.encode(), digest_size=SID_MARK_LENGTH * 3 // 4).digest()
    return binascii.b2a_base64(digest, newline=False).decode()


def nonce_mark() -> str:
    """The mark of a commit without a MessageSid: MARK_LENGTH random base64 characters."""
    return binascii.b2a_base64(os.urandom(9), newline=False).decode()[:MARK_LENGTH]


def timer_member(channel: str, phone: str) -> str:
    """The conversation's member of cv:timers: the channel's letter and the phone for an SMS or
    WhatsApp number (short, so that it takes Redis's smallest allocation), else its tag."""
    code = TIMER_CODES.get(channel)
    return code + phone if code is not None and phone.startswith("+") else conversation_tag(channel, phone)


def timer_conversation(member: str) -> tuple[str, str]:
    """(channel, phone) of a cv:timers member: timer_member's, or a tag (as members were
    written before, and are still for other channels)."""
    if ":" in member:
        return split_tag(member)
    return TIMER_CHANNELS[member[0]], member[1:]


def legacy_member(channel: str, phone: str) -> str:
    """The member the conversation's timer had before timer_member ('' when it is the same),
    removed by every write of its timer."""
    tag = conversation_tag(channel, phone)
    return "" if timer_member(channel, phone) == tag else tag


def pack_replies(replies: tuple[str, ...] | list[str]) -> str:
    """The replies to one inbound message as stored: a lone reply as itself unless it starts
    with '[', else a JSON list."""
    if len(replies) == 1 and not replies[0].startswith("["):
        return replies[0]
    return json.dumps(list(replies), separators=(",", ":"), ensure_ascii=False)


def unpack_replies(stored: str) -> list[str]:
    return json.loads(stored) if stored.startswith("[") else [stored]


def commit_tag() -> str:
    """A fresh tag for one commit attempt of an inbound message (see cv:{T}:r). It only has to
    differ from another delivery's, not be secret: `random`, no system call per message."""
    return binascii.b2a_base64(random.getrandbits(24).to_bytes(3, "big"), newline=False).decode()[:TAG_LENGTH]


def split_record(stored: str | None) -> tuple[str | None, str]:
    """(respondent record, revision) of a stored "<revision>|<record>" (and what follows it:
    its marks and replies, see cv:{T}:r); (None, "0") for none."""
    if stored is None:
        return None, "0"
    revision, bar, record = stored.partition(MARKS)[0].partition("|")
    if not (bar and revision.isascii() and revision.isdigit()):
        raise ValueError(f"not a stored respondent record: {stored[:80]}")
    return record, revision


def claims_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:claims"


def delivery_key(channel: str, phone: str) -> str:
    return f"cv:{{{conversation_tag(channel, phone)}}}:dlv"


def responses_key(survey: str) -> str:
    return f"cv:survey:{{{survey}}}:responses"


def invitation_claim_key(phone: str, digest: str) -> str:
    return f"cv:distributions:{{distributions}}:claim:{digest}:{phone}"


def flow_key(survey: str, version: str) -> str:
    return f"cv:survey:{{{survey}}}:flow:{version}"


# ------------------------------------------------------------ where each key lives: one Redis or a Cluster

SHARDS = 128  # a Redis Cluster's conversations are spread over this many slots (see ClusterLayout)
PIN = "\x1f"  # between survey and version in a member of a shard's pins (ClusterLayout.pins)


def shard_index(channel: str, phone: str) -> int:
    """The shard of a conversation on a Redis Cluster (the same for every worker, whatever
    the cluster: part of the key layout)."""
    return zlib.crc32(f"{channel}:{phone}".encode()) % SHARDS


@functools.cache
def shard_tags() -> tuple[str, ...]:
    """Each shard's hash tag: the first string "<i>.<n>" that Redis Cluster puts in slot
    i*128 ... i*128+127, so that the shards spread over a cluster's masters as evenly as its
    slots are (a cluster made by `redis-cli --cluster create` splits the slots in ranges)."""
    width = SLOTS // SHARDS
    tags = []
    for i in range(SHARDS):
        n = 0
        while not i * width <= key_slot(f"{i}.{n}".encode()) < (i + 1) * width:
            n += 1
        tags.append(f"{i}.{n}")
    return tuple(tags)


class Layout:
    """Where each key lives on one Redis: the names of the key layout above. A script may
    touch keys of any slot there; the layout has one shard, "", and every shard method gives
    the one key of its kind."""

    cluster = False
    shards: tuple[str, ...] = ("",)

    def shard(self, channel: str, phone: str) -> str:
        return ""

    def conversation(self, channel: str, phone: str) -> str:
        """The prefix of a conversation's keys (cv:{T}): + ":r" is its record, ":replies"..."""
        return f"cv:{{{conversation_tag(channel, phone)}}}"

    def respondent(self, channel: str, phone: str) -> str:
        return self.conversation(channel, phone) + ":r"

    def replies(self, channel: str, phone: str) -> str:
        return self.conversation(channel, phone) + ":replies"

    def claims(self, channel: str, phone: str) -> str:
        return self.conversation(channel, phone) + ":claims"

    def delivery(self, channel: str, phone: str) -> str:
        return self.conversation(channel, phone) + ":dlv"

    def dedupe(self, channel: str, phone: str) -> tuple[str, str]:
        """The dedupe hashes of the layout before (see dedupe_keys)."""
        inbound = self.conversation(channel, phone) + ":in"
        return inbound, inbound + ":prev"

    def respondents(self) -> str:
        """The pattern every conversation's record matches (for a SCAN)."""
        return respondent_key("*", "*")

    def respondent_of(self, key: str) -> tuple[str, str]:
        """(channel, phone) of a conversation's record key."""
        return split_tag(key[key.index("{") + 1:key.rindex("}")])

    def timers(self, shard: str) -> str:
        return TIMERS

    def outbox(self, shard: str) -> str:
        """The prefix of the outbox's keys: + ":messages", ":due", ":state", ":unknown"..."""
        return "cv:outbox:{outbox}"

    def outbox_queue(self, shard: str) -> tuple[str, str]:
        """The outbox keys a script queues a message into: its due zset and messages hash."""
        prefix = self.outbox(shard)
        return prefix + ":due", prefix + ":messages"

    def message_shard(self, message_id: str) -> str:
        """The shard whose outbox holds a message (its id says: engine.redis.outbox.new_id)."""
        return ""

    def responses(self, shard: str, survey: str) -> str:
        return responses_key(survey)

    def opt_outs(self, shard: str) -> str:
        return OPT_OUTS

    def deliveries(self, shard: str) -> str:
        return DELIVERIES

    def restored(self, shard: str) -> str:
        """The mark that the opt-outs were restored into the shard from the records database."""
        return RESTORED

    def pins(self, shard: str) -> str | None:
        """Where a commit notes the flow version its session is pinned to; None: on one Redis
        the commit extends the version's source key itself (cv:survey:{S}:flow:<version>)."""
        return None


class ClusterLayout(Layout):
    """Where each key lives on a Redis Cluster, where a script may touch one slot only.

    A conversation belongs to one of SHARDS shards (shard_index), each a hash tag of its own
    (shard_tags), and every key a conversation's scripts touch carries it: the conversation's
    own, cv:{<shard>}:<T>:r (:replies, :claims, :dlv), and the shard's timers, outbox, record
    streams and flow pins. So a commit is one slot, and atomic as on one Redis; every worker
    drains every shard's timers, outbox and streams. What crossed slots on one Redis:
      cv:{<shard>}:timers     zset    as cv:timers, for the shard's conversations
      cv:{<shard>}:outbox:*   as cv:outbox:{outbox}:*, for messages to the shard's
                              conversations (a message's id ends in its shard's index); the
                              pace of a sender is kept apart, under {outbox}, in scripts of
                              its own (engine.redis.outbox)
      cv:{<shard>}:responses  stream  the closed responses of every survey (each record names
                              its survey), archived as cv:survey:{S}:responses
      cv:{<shard>}:optouts, cv:{<shard>}:deliveries  streams  as cv:records:{optouts}, {deliveries}
      cv:records:{<shard>}:restored  string  as cv:records:{restored}, for the shard (a master may lose
                              its data alone: the opt-outs are restored when any shard's is gone)
      cv:{<shard>}:pins       zset  member "<survey>\x1f<version>", score = until when (Redis
                              time) a session of the shard pinned to it may live; a worker
                              extends each version's source key to the greatest of these every
                              PIN_EVERY seconds (Store.keep_pinned_flows), since a commit
                              cannot reach it.
    """

    cluster = True

    def __init__(self) -> None:
        self.shards = shard_tags()

    def shard(self, channel: str, phone: str) -> str:
        return self.shards[shard_index(channel, phone)]

    def conversation(self, channel: str, phone: str) -> str:
        return f"cv:{{{self.shard(channel, phone)}}}:{conversation_tag(channel, phone)}"

    def respondents(self) -> str:
        return "cv:{*}:*:r"

    def respondent_of(self, key: str) -> tuple[str, str]:
        return split_tag(key[key.index("}:") + 2:-len(":r")])

    def timers(self, shard: str) -> str:
        return f"cv:{{{shard}}}:timers"

    def outbox(self, shard: str) -> str:
        return f"cv:{{{shard}}}:outbox"

    def message_shard(self, message_id: str) -> str:
        index = message_id.rpartition(".")[2]
        return self.shards[int(index) % SHARDS] if index.isdigit() else self.shards[0]

    def responses(self, shard: str, survey: str) -> str:
        return f"cv:{{{shard}}}:responses"

    def opt_outs(self, shard: str) -> str:
        return f"cv:{{{shard}}}:optouts"

    def deliveries(self, shard: str) -> str:
        return f"cv:{{{shard}}}:deliveries"

    def pins(self, shard: str) -> str | None:
        return f"cv:{{{shard}}}:pins"

    def restored(self, shard: str) -> str:
        return f"cv:records:{{{shard}}}:restored"


# ------------------------------------------------------------ the scripts' typed calls
# Each script's KEYS then ARGV, as its header in engine/redis/scripts/ names them, in that
# order (a test holds the two equal); Lua.evalsha flattens a call. '' stands for none.


class ReadCall(NamedTuple):
    respondent: str
    replies: str
    claims: str
    dedupe: str  # the dedupe hashes of the layout before (dedupe_keys)
    dedupe_before: str
    sid: str  # the inbound MessageSid's field (sid_field), '' for none
    mark: str  # its sid_mark
    claimer: str  # this read's tag, in the claim it may make ("twiml:<claimer>")
    claims_ttl: str = str(DEDUPE_TTL)


class TakeOverCall(NamedTuple):
    claims: str
    respondent: str
    replies: str
    dedupe: str
    dedupe_before: str
    outbox_due: str  # the outbox of the conversation's shard
    outbox_messages: str
    sid: str  # sid_field
    mark: str  # sid_mark
    claimer: str  # the tag of the read whose claim is taken over
    id: str  # the message of the replies queued as the claim is taken over ('': only find them)
    due: str
    message: str


class CommitCall(NamedTuple):
    respondent: str
    replies: str  # replies_key
    timers: str
    flow: str  # the pinned version's source (the respondent key when there is none)
    outbox_due: str
    outbox_messages: str
    dedupe: str  # the dedupe hashes of the layout before (dedupe_keys)
    dedupe_before: str
    streams: tuple[str, ...]  # one per record (a response's survey stream, or the opt-out stream)
    revision: str  # the revision the step read
    record: str
    record_ttl: str  # '0' keeps the record forever
    sid: str  # the inbound MessageSid's field (sid_field), '' for none
    mark: str  # sid_mark(the MessageSid) + this attempt's commit_tag(); without one, a nonce_mark()
    sent: str  # pack_replies(the replies to the inbound message)
    member: str  # the conversation's timer (timer_member)
    legacy_member: str  # and what it was before (legacy_member)
    due: str
    flow_ttl: str
    # the limits, the same for every commit (last but one, so that they can be defaults)
    marks_kept: str = str(DEDUPE_KEEP)
    replies_kept: str = str(REPLIES_KEPT)
    replies_ttl: str = str(REPLIES_TTL)
    outbox: str = ""  # JSON [[id, due, message JSON]...] of the messages the step sends; '' none
    # on a Redis Cluster, "<survey>\x1f<version>" pinned, noted in the shard's pins (then `flow`)
    pin: str = ""
    responses: tuple[str, ...] = ()  # one record (JSON) per stream


class ClaimDueCall(NamedTuple):
    timers: str
    now: str
    lease: str
    limit: str


class RescheduleCall(NamedTuple):
    respondent: str
    timers: str
    revision: str
    member: str
    legacy_member: str
    due: str


class ClaimCall(NamedTuple):
    claims: str
    outbox_due: str  # the outbox of the conversation's shard
    outbox_messages: str
    sid: str  # the inbound MessageSid's field
    by: str  # "rest:<tag>": the sender's own tag
    ttl: str
    id: str  # the message of the replies queued when this claim wins ('': none)
    due: str
    message: str


class RecordDeliveryCall(NamedTuple):
    deliveries: str
    stream: str  # DELIVERIES: where a distribution's message reports its status
    sid: str  # the outbound MessageSid
    record: str
    ttl: str
    distribution: str  # the distribution the message invited for ('' none, or as first recorded)
    event: str  # the status as a deliveries-stream record, without its distribution
    outranking: tuple[str, ...]  # OUTRANKING[its status]


READ = Lua("read.lua", ReadCall)
COMMIT = Lua("commit.lua", CommitCall)
CLAIM_DUE = Lua("claim_due.lua", ClaimDueCall)
RESCHEDULE = Lua("reschedule.lua", RescheduleCall)
RECORD_DELIVERY = Lua("record_delivery.lua", RecordDeliveryCall)
CLAIM = Lua("claim.lua", ClaimCall)
TAKE_OVER = Lua("take_over.lua", TakeOverCall)

_DELIVERY_TTL = str(DELIVERY_TTL)  # as sent


def connect(url: str, max_connections: int = 64, cluster: bool = False) -> redis.Redis | RedisCluster:
    """A pooled client whose every command fails within REDIS_TIMEOUT instead of waiting.

    For the rarer commands (Store's scripts go through the multiplexer). A broken connection
    (Redis restarted, so every pooled connection is stale) is retried once on a fresh one; a
    timeout is not retried, so an unresponsive Redis costs one REDIS_TIMEOUT. The commands
    sent through here are reads and idempotent writes, safe to repeat.

    `cluster` (the URL names a Redis Cluster node: Store.open asks it): a RedisCluster client
    that learns the other nodes from it (engine.redis.cluster); Multiplexer.like makes a
    ClusterMultiplexer of it."""
    if cluster:
        return cluster_client(url, REDIS_TIMEOUT, max_connections)
    # A blocking pool: past max_connections commands wait (bounded by REDIS_TIMEOUT) for a
    # free connection instead of failing at once, which would turn a busy moment into 503s.
    # redis-py's own timers (connecting, waiting for the pool) are off: they count the time
    # the worker itself stood still; every call's whole wait is TimedRedis's bound instead.
    pool = BlockingConnectionPool.from_url(
        url, socket_connect_timeout=None, socket_timeout=None,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=max_connections, timeout=None, decode_responses=True,
    )
    return TimedRedis.from_pool(pool)


class TimedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True) -> list:
        return await bounded(super().execute(raise_on_error), REDIS_TIMEOUT)


class Script:
    """A Lua script run by EVALSHA through the multiplexer (loaded on NOSCRIPT)."""

    def __init__(self, mux: Multiplexer, lua: Lua):
        self.mux, self.lua = mux, lua

    async def __call__(self, call: tuple, wait: bytes | None = None, repeat: bool = True):
        """The script's reply; with `wait` (a packed WAIT), (its reply, the replicas counted);
        `repeat`: as Multiplexer.execute's."""
        command = self.lua.evalsha(call)
        options = {} if wait is None and repeat else {"wait": wait, "repeat": repeat}
        try:
            return await self.mux.execute(*command, **options)
        except NoScriptError:  # Redis restarted (or flushed its scripts) since the last call
            await self.mux.execute("SCRIPT", "LOAD", self.lua.text)
            return await self.mux.execute(*command, **options)

    def start(self, call: tuple) -> asyncio.Future | None:
        """The reply's future of a call written at once (Multiplexer.send_now), or None (no live
        connection, or a Redis Cluster): then the caller awaits the script's call instead, which
        connects, loads the script and sends it again after a lost connection."""
        send_now = getattr(self.mux, "send_now", None)
        return None if send_now is None else send_now(*self.lua.evalsha(call))


class TimedRedis(redis.Redis):
    """The client `connect` makes: every command and pipeline bounded by REDIS_TIMEOUT (in the
    event loop's running time: engine.redis.multiplexer.bounded). Not redis-py's socket_timeout:
    it wraps every write in asyncio.wait_for, which on Python 3.11 starts a Task per command;
    one timer around the whole command costs less, and also bounds connecting and waiting for
    the pool."""

    async def execute_command(self, *args, **options):
        return await bounded(super().execute_command(*args, **options), REDIS_TIMEOUT)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


@dataclass(frozen=True)
class Snapshot:
    """One conversation as read: the record (None when new), its revision, and the
    replies already committed for the inbound MessageSid (None when it is new; empty when they
    went, or go, through the REST API, see cv:{T}:claims, or are no longer kept: then
    `replies_kept` is False, see cv:{T}:replies)."""

    channel: str
    phone: str
    record: str | None
    revision: str
    seen_replies: list[str] | None
    replies_kept: bool = True


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
    outbox: tuple[tuple[str, float, str], ...] = ()  # (id, due, message JSON) to send


@dataclass(frozen=True)
class Committed:
    ok: bool  # False: someone else changed the conversation first; read again
    flow_missing: bool = False  # the pinned version's source was not in Redis


@dataclass(frozen=True)
class Replication:
    """REDIS_WAIT_REPLICAS: each commit waits (WAIT, on the connection that ran it, so it
    covers the commit and every write before it there) until `replicas` replicas hold it,
    at most `timeout_ms`; 0 replicas: commits are answered as soon as the master has them."""

    replicas: int = 0
    timeout_ms: int = 100

    @cached_property
    def command(self) -> bytes | None:
        """The WAIT sent after each commit, packed once; None: none."""
        return hiredis.pack_command(("WAIT", self.replicas, self.timeout_ms)) if self.replicas else None


class NotReplicated(RedisError):
    """A commit (or the commit a redelivery is answered from) is on the master but fewer
    replicas than REDIS_WAIT_REPLICAS acknowledged it within the timeout: not answered as
    done (a webhook gets 503, and its redelivery is answered from the commit once replicated)."""


class ReadUnknown(RedisTimeoutError):
    """A READ for an inbound MessageSid was sent but its answer never came. If the message was
    already committed, the read claimed the delivery of its replies for a TwiML answer its
    request cannot give: Store.take_over hands that delivery to the REST API."""

    def __init__(self, channel: str, phone: str, message_sid: str, claimer: str, cause: Exception):
        super().__init__(f"the read's outcome is unknown: {cause}")
        self.channel, self.phone, self.message_sid, self.claimer = channel, phone, message_sid, claimer


class CommitUnknown(RedisError):
    """COMMIT was sent (or may have been) but its answer never came: Redis timed out or the
    connection dropped. It may have landed. Repeating the identical call (Store.recommit)
    settles it: a commit that already landed knows itself by its nonce or its tag, and one
    that did not can land only while the revision it read is current, so after any answer
    the outcome is final."""

    def __init__(self, call: CommitCall, cause: Exception):
        super().__init__(f"the commit's outcome is unknown: {cause}")
        self.call = call


class Store:
    """Canvass's Redis. The scripts, which every webhook and timer runs, go through one
    pipelined connection (engine.redis.multiplexer); the rarer commands (exports, the admin API,
    flow sources) through redis-py's pool."""

    def __init__(self, client: redis.Redis | RedisCluster, replication: Replication = Replication()):
        self.redis = client
        self.replication = replication
        self.layout = ClusterLayout() if isinstance(client, RedisCluster) else Layout()
        self.mux = Multiplexer.like(client, REDIS_TIMEOUT)
        self._read = Script(self.mux, READ)
        self._commit = Script(self.mux, COMMIT)
        self._claim = Script(self.mux, CLAIM_DUE)
        self._reschedule = Script(self.mux, RESCHEDULE)
        self._record_delivery = Script(self.mux, RECORD_DELIVERY)
        # A connection of its own for settling commits: the main one's watchdog fails every
        # call in flight after REDIS_TIMEOUT, which a patient call must outlast.
        self.patient = Multiplexer.like(client, PATIENT_TIMEOUT)
        self._recommit = Script(self.patient, COMMIT)
        self._claim_delivery = Script(self.patient, CLAIM)
        self._take_over = Script(self.patient, TAKE_OVER)

    @classmethod
    def from_url(cls, url: str) -> Store:
        """A Store on one Redis (see open)."""
        return cls(connect(url))

    @classmethod
    async def open(cls, url: str, replication: Replication = Replication()) -> Store:
        """A Store on the Redis `url` names, one Redis or a Redis Cluster (the node is asked)."""
        return cls(connect(url, cluster=await is_cluster_node(url)), replication)

    async def aclose(self) -> None:
        await self.mux.aclose()
        await self.patient.aclose()
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def web_secret(self) -> bytes:
        """The key of the web forms' CSRF tokens, shared by every worker (cv:web:secret)."""
        await self.redis.set(WEB_SECRET, secrets.token_urlsafe(32), nx=True)
        secret = await self.redis.get(WEB_SECRET)
        return secret if isinstance(secret, bytes) else str(secret).encode()

    # ------------------------------------------------------------ conversations

    async def read(self, channel: str, phone: str, message_sid: str | None = None) -> Snapshot:
        """The conversation as stored. For a MessageSid already committed, the replies to answer
        it with ([] when the REST API delivered them). ReadUnknown when the read was sent for a
        MessageSid but its answer never came: it may have claimed the replies' delivery."""
        layout = self.layout
        dedupe, dedupe_before = layout.dedupe(channel, phone)
        call = ReadCall(
            respondent=layout.respondent(channel, phone), replies=layout.replies(channel, phone),
            claims=layout.claims(channel, phone), dedupe=dedupe,
            dedupe_before=dedupe_before, sid=sid_field(message_sid) if message_sid else "",
            mark=sid_mark(message_sid) if message_sid else "", claimer=commit_tag() if message_sid else "")
        try:
            stored, seen, kept, claim = await self._read(call)
        except NotSent:
            raise  # it never ran
        except (RedisTimeoutError, RedisConnectionError) as err:
            if not message_sid:
                raise
            raise ReadUnknown(channel, phone, message_sid, call.claimer, err) from None
        record, revision = split_record(stored)
        replies = None
        if seen:  # its replies went, or go, through the REST API, or are no longer kept: none
            replies = [] if kept is None or claim.startswith("rest") else unpack_replies(kept)
        return Snapshot(channel, phone, record, revision, replies, replies_kept=not seen or kept is not None)

    async def claimed_replies(self, unknown: ReadUnknown) -> list[str] | None:
        """The committed replies whose delivery the read behind `unknown` claimed for its TwiML
        answer (None: it claimed none, or they are no longer kept): what take_over queues."""
        stored = await self._take_over(self._take_over_call(unknown, ("", 0.0, "")))
        return None if stored is None else unpack_replies(stored)

    async def take_over(self, unknown: ReadUnknown, queue: tuple[str, float, str]) -> bool:
        """Hand to the REST API the delivery the read behind `unknown` claimed, and queue `queue`
        (the outbox message of its replies: id, due, JSON) in the same step: False when that
        claim no longer holds. Repeating a take over whose answer was lost is safe: it knows
        itself by the claim it made, and queues nothing twice."""
        return await self._take_over(self._take_over_call(unknown, queue)) == 1

    def _take_over_call(self, unknown: ReadUnknown, queue: tuple[str, float, str]) -> TakeOverCall:
        layout, channel, phone = self.layout, unknown.channel, unknown.phone
        dedupe, dedupe_before = layout.dedupe(channel, phone)
        outbox_due, outbox_messages = layout.outbox_queue(layout.shard(channel, phone))
        id_, due, message = queue
        return TakeOverCall(
            claims=layout.claims(channel, phone), respondent=layout.respondent(channel, phone),
            replies=layout.replies(channel, phone), dedupe=dedupe, dedupe_before=dedupe_before,
            outbox_due=outbox_due, outbox_messages=outbox_messages, sid=sid_field(unknown.message_sid),
            mark=sid_mark(unknown.message_sid), claimer=unknown.claimer, id=id_, due=repr(due), message=message)

    async def commit(self, snapshot: Snapshot, change: Change) -> Committed:
        channel, phone, pinned, sid = snapshot.channel, snapshot.phone, change.pinned, change.message_sid
        layout = self.layout
        shard = layout.shard(channel, phone)
        streams = responses = ()
        if change.responses or change.opt_outs:  # one stream key per record
            streams = tuple([*(layout.responses(shard, response["survey"]) for response in change.responses),
                             *(layout.opt_outs(shard) for _ in change.opt_outs)])
            responses = tuple([json.dumps(record, separators=(",", ":"))
                               for record in (*change.responses, *change.opt_outs)])
        respondent = layout.respondent(channel, phone)
        dedupe, dedupe_before = layout.dedupe(channel, phone)
        pins, (outbox_due, outbox_messages) = layout.pins(shard), layout.outbox_queue(shard)
        call = CommitCall(
            respondent=respondent, replies=layout.replies(channel, phone), timers=layout.timers(shard),
            flow=(pins or flow_key(*pinned)) if pinned else respondent,
            outbox_due=outbox_due, outbox_messages=outbox_messages, dedupe=dedupe, dedupe_before=dedupe_before,
            streams=streams, revision=snapshot.revision, record=change.record,
            record_ttl=str(change.record_ttl), sid=sid_field(sid) if sid else "",
            mark=sid_mark(sid) + commit_tag() if sid else nonce_mark(),
            sent=pack_replies(change.replies) if sid else "",
            member=timer_member(channel, phone), legacy_member=legacy_member(channel, phone),
            due=repr(change.due) if change.due is not None else "",
            flow_ttl=str(max(1, change.record_ttl or RESPONDENT_MARGIN)) if pinned else "",
            responses=responses,
            outbox=json.dumps([[id_, repr(due), message] for id_, due, message in change.outbox],
                              separators=(",", ":"), ensure_ascii=False) if change.outbox else "",
            pin=PIN.join(pinned) if pinned and pins else "",
        )
        try:
            revision, flow_missing = await self._replicated(self._commit, call)
        except NotSent:
            raise  # Redis could not be reached: the commit did not run
        except (RedisTimeoutError, RedisConnectionError) as err:
            raise CommitUnknown(call, err) from None
        return Committed(ok=revision != 0, flow_missing=bool(flow_missing))

    async def _replicated(self, commit: Script, call: CommitCall):
        """The commit's reply, once as many replicas as asked hold it (NotReplicated if not)."""
        wait = self.replication.command
        if wait is None:
            return await commit(call)
        (revision, flow_missing), replicas = await commit(call, wait)
        if revision != 0 and replicas < self.replication.replicas:
            raise NotReplicated(f"the commit is on the master, but {replicas} of the "
                                f"{self.replication.replicas} replicas asked (REDIS_WAIT_REPLICAS) "
                                f"acknowledged it within {self.replication.timeout_ms} ms")
        return revision, flow_missing

    async def replicated(self, channel: str, phone: str) -> None:
        """Before a redelivery is answered from its commit: WAIT on the connection of the
        conversation's master (the READ that found the commit claimed its replies there, a
        write after it). NotReplicated when too few replicas answer."""
        if self.replication.command is None:
            return
        wanted, timeout_ms = self.replication.replicas, self.replication.timeout_ms
        replicas = await self.mux.execute("WAIT", wanted, timeout_ms, key=self.layout.respondent(channel, phone))
        if replicas < wanted:
            raise NotReplicated(f"{replicas} of the {wanted} replicas asked (REDIS_WAIT_REPLICAS) "
                                f"acknowledged the commit within {timeout_ms} ms")

    async def recommit(self, unknown: CommitUnknown) -> Committed:
        """Settle a commit whose outcome was unknown by repeating it, waiting up to
        PATIENT_TIMEOUT: ok when it is in (it had landed, or lands now), else it never will.
        CommitUnknown again when Redis still does not answer (or cannot be reached)."""
        try:
            revision, flow_missing = await self._replicated(self._recommit, unknown.call)
        except (RedisTimeoutError, RedisConnectionError) as err:
            raise CommitUnknown(unknown.call, err) from None
        return Committed(ok=revision != 0, flow_missing=bool(flow_missing))

    async def claim(self, channel: str, phone: str, message_sid: str, by: str,
                    queue: tuple[str, float, str] | None = None) -> str:
        """Claim the delivery of an inbound message's committed replies as `by` ("rest:<tag>",
        the tag the claimer's own): `by` when this claim won, else the claim that holds
        ("twiml:<tag>": a redelivery answered with them; another "rest:<tag>"). A claim that
        wins queues `queue` (the outbox message of the replies: id, due, JSON) in the same step,
        so repeating a claim whose answer was lost is safe: it knows itself, and queues nothing."""
        outbox_due, outbox_messages = self.layout.outbox_queue(self.layout.shard(channel, phone))
        id_, due, message = queue if queue is not None else ("", 0.0, "")
        return await self._claim_delivery(ClaimCall(
            claims=self.layout.claims(channel, phone), outbox_due=outbox_due,
            outbox_messages=outbox_messages, sid=sid_field(message_sid), by=by, ttl=str(DEDUPE_TTL),
            id=id_, due=repr(due), message=message))

    async def records(self, phone: str, channels: tuple[str, ...]) -> dict[str, str | None]:
        """The stored respondent record of `phone` on each channel (None where there is none)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.get(self.layout.respondent(channel, phone))
            values = await pipe.execute()
        return {channel: split_record(stored)[0] for channel, stored in zip(channels, values, strict=True)}

    async def respondent_records(self, batch: int = 500) -> AsyncIterator[tuple[str, str, str]]:
        """(channel, phone, stored record) of every respondent: a full SCAN, for exports that
        include responses still in progress, never per request."""
        layout = self.layout
        async for keys in _chunks(self.redis.scan_iter(match=layout.respondents(), count=batch, _type="string"), batch):
            for key, stored in zip(keys, await self.redis.mget(keys), strict=True):
                record = split_record(stored)[0] if stored else None
                if record:
                    yield (*layout.respondent_of(key), record)

    # ------------------------------------------------------------ timers

    async def claim_due(self, now: float, lease: float, limit: int) -> tuple[list[tuple[str, str]], bool]:
        """(channel, phone) of up to `limit` due timers, each claimed for `lease` seconds, and
        whether more may be due. On a Cluster every shard is asked at once, for its share."""
        shards = self.layout.shards
        share = limit if len(shards) == 1 else max(1, -(-limit // len(shards)) * 4)
        results = await asyncio.gather(*(self._claim(ClaimDueCall(
            timers=self.layout.timers(shard), now=repr(now), lease=repr(lease), limit=str(share)))
            for shard in shards), return_exceptions=True)
        found = [members for members in results if not isinstance(members, BaseException)]
        if not found:  # no shard answered (one Redis: its one shard)
            raise next(error for error in results if isinstance(error, BaseException))
        # a shard whose master cannot answer now (a failover) keeps its timers for later; the
        # others' go now
        claimed = [timer_conversation(member) for members in found for member in members]
        return claimed, any(len(members) >= share for members in found)

    async def reschedule(self, snapshot: Snapshot, due: float | None) -> None:
        channel, phone = snapshot.channel, snapshot.phone
        await self._reschedule(RescheduleCall(
            respondent=self.layout.respondent(channel, phone),
            timers=self.layout.timers(self.layout.shard(channel, phone)), revision=snapshot.revision,
            member=timer_member(channel, phone), legacy_member=legacy_member(channel, phone),
            due=repr(due) if due is not None else ""))

    # ------------------------------------------------------------ delivery statuses

    async def record_delivery(self, channel: str, phone: str, message_sid: str, status: str,
                              error_code: int | None, at: float, distribution: str | None = None) -> None:
        """Note a message's delivery status, unless a later one is already noted. A message of a
        distribution (named by its first record) also reports it on the deliveries stream."""
        record = {"status": status, "error_code": error_code, "at": at}
        if distribution:
            record["d"] = distribution
        event = {"channel": channel, "phone": phone, "state": status, "sid": message_sid,
                 "error_code": error_code, "at": at}
        layout = self.layout
        await self._record_delivery(RecordDeliveryCall(
            deliveries=layout.delivery(channel, phone), stream=layout.deliveries(layout.shard(channel, phone)),
            sid=message_sid,
            record=json.dumps(record), ttl=_DELIVERY_TTL, distribution=distribution or "",
            event=json.dumps(event), outranking=OUTRANKING.get(status, ())))

    async def deliveries(self, channel: str, phone: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(self.layout.delivery(channel, phone))
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

    async def keep_pinned_flows(self) -> list[tuple[str, str]]:
        """On a Redis Cluster: extend each pinned flow version's source key to the latest time a
        shard's session pinned to it may live (ClusterLayout.pins), forget pins past, and answer
        the (survey, version) pinned whose source is gone (for the registry to store again).
        On one Redis every commit does this itself: nothing to do."""
        if not self.layout.cluster:
            return []
        now = int((await self.redis.time())[0])
        pins = [self.layout.pins(shard) for shard in self.layout.shards]
        found = await asyncio.gather(*(self.mux.execute("ZRANGEBYSCORE", key, now, "+inf", "WITHSCORES")
                                       for key in pins))
        latest: dict[str, float] = {}
        for entries in found:
            for member, until in zip(entries[::2], entries[1::2], strict=True):
                member = member.decode() if isinstance(member, bytes) else member
                latest[member] = max(float(until), latest.get(member, 0.0))
        await asyncio.gather(*(self.mux.execute("ZREMRANGEBYSCORE", key, "-inf", f"({now}") for key in pins))
        missing = []
        for member, until in latest.items():
            survey, _, version = member.partition(PIN)
            key = flow_key(survey, version)
            if not await self.redis.expire(key, max(1, int(until) - now), gt=True) and not await self.redis.exists(key):
                missing.append((survey, version))
        return missing

    # ------------------------------------------------------------ responses

    async def has_responses(self, survey: str) -> bool:
        if not self.layout.cluster:
            return bool(await self.redis.exists(responses_key(survey)))
        async for _ in self.responses(survey):
            return True
        return False

    async def responses(self, survey: str, until: str = "+", batch: int = 500):
        """(entry id, response record) of a survey, oldest first, up to entry `until`. On a
        Cluster its responses are in every shard's stream, among other surveys': merged by
        entry id (Redis's time when each was added)."""
        if until == "-":
            return
        if not self.layout.cluster:
            async for entry in self._stream(responses_key(survey), until, batch):
                yield entry
            return
        streams = [self.layout.responses(shard, survey) for shard in self.layout.shards]
        found = await asyncio.gather(*(self._survey_entries(stream, survey, until, batch) for stream in streams))
        for entry in heapq.merge(*found, key=lambda entry: _entry_order(entry[0])):
            yield entry

    async def _survey_entries(self, stream: str, survey: str, until: str, batch: int) -> list[tuple[str, dict]]:
        return [(entry_id, record) async for entry_id, record in self._stream(stream, until, batch)
                if record.get("survey") == survey]

    async def _stream(self, key: str, until: str, batch: int):
        # through the pipelined links: on a Cluster an export reads every shard's stream at
        # once, which through redis-py's client would take a connection each
        start = "-"
        while True:
            entries = await self.mux.execute("XRANGE", key, start, until, "COUNT", batch)
            for entry_id, fields in entries:
                yield entry_id, json.loads(dict(zip(fields[::2], fields[1::2], strict=True))["r"])
            if len(entries) < batch:
                return
            start = "(" + entries[-1][0]

    # ------------------------------------------------------------ the fleet: live set, workers, metrics

    @cached_property
    def _announce(self) -> Script:
        return Script(self.mux, ANNOUNCE)

    @cached_property
    def _beat(self) -> Script:
        return Script(self.mux, BEAT)

    async def announce_live(self, flows: dict[str, str], by: str) -> tuple[int, list[str]]:
        """Make {survey id: version} the live set of every worker: (its generation, the ids of
        the workers alive when it was announced, which are expected to take it)."""
        generation, workers = await self._announce(
            AnnounceCall(LIVE, WORKERS, json.dumps(flows, sort_keys=True), by, str(FLEET_TTL), RELOADS))
        return int(generation), list(workers)

    async def survey_statuses(self) -> dict[str, str]:
        """{survey id: "paused" | "closed"} of the surveys that are not active."""
        # through the multiplexer: a webhook reads it beside its READ, in the same write
        found = await self.mux.execute("HGETALL", STATUSES)
        items = [item.decode() if isinstance(item, bytes) else item for item in found]
        return dict(zip(items[::2], items[1::2], strict=True))

    async def set_survey_status(self, survey: str, status: str) -> None:
        """Set a survey's status; "active" removes its field (a survey is active unless set otherwise)."""
        if status == "active":
            await self.redis.hdel(STATUSES, survey)
        else:
            await self.redis.hset(STATUSES, survey, status)

    async def live_flows(self) -> tuple[int, dict[str, str]]:
        """(generation, {survey id: version}) of the announced live set; (0, {}) when none was."""
        generation, flows = await self.redis.hmget(LIVE, ["generation", "flows"])
        return int(generation or 0), json.loads(flows) if flows else {}

    async def beat(self, worker: str, generation: int, refused: int = 0, error: str = "") -> int:
        """Note that `worker` is alive and runs `generation`; the live generation in return."""
        return int(await self._beat(BeatCall(WORKERS, LIVE, worker, str(generation), str(refused), error,
                                             str(FLEET_TTL))))

    async def leave(self, worker: str) -> None:
        await self.redis.hdel(WORKERS, worker)

    async def workers(self) -> dict[str, dict]:
        """Every worker alive (beat within FLEET_TTL, by Redis's clock): id -> its entry."""
        (now, _), entries = await asyncio.gather(self.redis.time(), self.redis.hgetall(WORKERS))
        found = {worker: json.loads(entry) for worker, entry in entries.items()}
        return {worker: entry for worker, entry in found.items() if entry["beat"] >= now - FLEET_TTL}

    async def reload_announcements(self) -> AsyncIterator[int]:
        """The generations announced from now on, as they come (a ConnectionError ends it)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(RELOADS)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    yield int(message["data"])
        finally:
            await pubsub.aclose()

    async def save_metrics(self, server: str, worker: str, samples: str, at: float) -> None:
        """Store a worker's samples, taken at `at` (the clock of the host all of them run on)."""
        key = metrics_key(server)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, worker, f"{at!r}|{samples}")
            pipe.expire(key, FLEET_TTL)
            await pipe.execute()

    async def all_metrics(self, server: str, now: float) -> dict[str, str]:
        """The samples of every worker of `server` stored within FLEET_TTL of `now`; older ones
        (a worker killed before it could drop its own) are deleted."""
        key = metrics_key(server)
        fresh, stale = {}, []
        for worker, stored in (await self.redis.hgetall(key)).items():
            at, _, samples = stored.partition("|")
            if float(at) >= now - FLEET_TTL:
                fresh[worker] = samples
            else:
                stale.append(worker)
        if stale:
            await self.redis.hdel(key, *stale)
        return fresh

    async def drop_metrics(self, server: str, worker: str) -> None:
        await self.redis.hdel(metrics_key(server), worker)

    # ------------------------------------------------------------ Redis itself

    async def health(self) -> dict:
        """Redis's memory use and persistence status, from INFO memory and INFO persistence
        (on a Redis Cluster, over every master: sizes summed, a failed status any master's;
        `memory_full`: some master is at its maxmemory, so refuses the writes of its slots)."""
        info = await self.redis.info("memory")
        info.update(await self.redis.info("persistence"))
        masters = [info]
        if self.layout.cluster:
            masters = list((await self.redis.info("memory", target_nodes=self.redis.PRIMARIES)).values())
        return {
            "used_bytes": int(info["used_memory"]),
            "max_bytes": int(info["maxmemory"]),  # 0: no limit
            "memory_full": any(0 < int(master["maxmemory"]) <= int(master["used_memory"]) for master in masters),
            "policy": str(info["maxmemory_policy"]),
            "aof_enabled": bool(int(info["aof_enabled"])),
            "aof_last_write": str(info["aof_last_write_status"]),
            "aof_last_rewrite": str(info["aof_last_bgrewrite_status"]),
            "rdb_last_snapshot": str(info["rdb_last_bgsave_status"]),
        }

    # ------------------------------------------------------------ archiving (engine.records)

    async def archive_claim(self, stream: str, consumer: str, count: int, idle_ms: int, *,
                            own: bool = True, others: bool = True) -> list[tuple[str, dict | None]]:
        """Up to `count` entries of `stream` for `consumer` of ARCHIVE_GROUP to archive: first
        its own unacknowledged ones (its database transaction failed; `own`: there may be
        some), then those another consumer left unacknowledged for `idle_ms` (it died; looked
        for when `others`), then new ones. (entry id, record); None for an entry gone from the
        stream (it can only be acknowledged). The group is created when missing, from the
        start of the stream, so a stream made before the group (or after Redis lost its data)
        is archived whole."""
        try:
            return await self._archive_claim(stream, consumer, count, idle_ms, own, others)
        except ResponseError as err:
            if not str(err).startswith("NOGROUP"):
                raise
        try:
            await self.redis.xgroup_create(stream, ARCHIVE_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if not str(err).startswith("BUSYGROUP"):  # another worker made it meanwhile
                raise
        return await self._archive_claim(stream, consumer, count, idle_ms, own, others)

    async def _archive_claim(self, stream: str, consumer: str, count: int, idle_ms: int,
                             own: bool, others: bool):
        entries = await self._read_group(stream, consumer, "0", count) if own else []
        if len(entries) < count and others:
            claimed = await self.redis.xautoclaim(stream, ARCHIVE_GROUP, consumer, idle_ms, "0-0",
                                                  count=count - len(entries))
            entries += claimed[1]
        # new ones whatever came before: own entries the database refuses must not fill every
        # read and hold the stream back
        entries += await self._read_group(stream, consumer, ">", count)
        return [(entry_id, json.loads(fields["r"]) if fields else None)
                for entry_id, fields in entries]

    async def _read_group(self, stream: str, consumer: str, after: str, count: int) -> list:
        """(entry id, {field: value}, or None for an entry gone from the stream) read as the
        group's `consumer`: through the multiplexer, as every round reads every stream."""
        read = await self.mux.execute("XREADGROUP", "GROUP", ARCHIVE_GROUP, consumer, "COUNT", count,
                                      "STREAMS", stream, after)
        return [(entry_id, dict(zip(fields[::2], fields[1::2], strict=True)) if fields else None)
                for _, entries in read or () for entry_id, fields in entries]

    async def archive_ack(self, stream: str, entry_ids: list[str]) -> None:
        """The entries are in the records database: the group need not hand them out again."""
        if entry_ids:
            await self.mux.execute("XACK", stream, ARCHIVE_GROUP, *entry_ids)

    async def archive_trim(self, stream: str) -> int:
        """Drop the entries below the oldest one not archived yet; how many went."""
        return await self._trim_archived(TrimArchivedCall(stream, ARCHIVE_GROUP))

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

    async def record_streams(self, surveys: set[str]) -> list[tuple[str, str]]:
        """(stream, kind) of every record stream to archive: kind "optouts", "deliveries" or
        "responses". On one Redis, a response stream per survey (`surveys`: those known); on a
        Cluster, the three streams of every shard that hold entries (XLEN, in one pipeline: a
        connection per master, where 384 commands at once would each take one of its pool)."""
        layout = self.layout
        if not layout.cluster:
            return [(OPT_OUTS, "optouts"), (DELIVERIES, "deliveries"),
                    *((responses_key(survey), "responses") for survey in sorted(surveys))]
        streams = [(stream, kind) for shard in layout.shards for stream, kind in (
            (layout.opt_outs(shard), "optouts"), (layout.deliveries(shard), "deliveries"),
            (layout.responses(shard, ""), "responses"))]
        lengths = await asyncio.gather(*(self.mux.execute("XLEN", stream) for stream, _ in streams))
        return [entry for entry, length in zip(streams, lengths, strict=True) if length]

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
                pipe.set(self.layout.respondent(channel, phone), "1|" + record, nx=True)
            stored = await pipe.execute()
        return sum(1 for done in stored if done)

    async def opt_outs_restored(self) -> bool:
        """Whether Redis still holds the opt-outs restored from the records database: on a
        Cluster every shard keeps its own mark, since one master may lose its data alone."""
        if not self.layout.cluster:
            return bool(await self.redis.exists(RESTORED))
        marks = await asyncio.gather(*(self.mux.execute("EXISTS", self.layout.restored(shard))
                                       for shard in self.layout.shards))
        return all(marks)

    async def mark_opt_outs_restored(self) -> None:
        if not self.layout.cluster:
            await self.redis.set(RESTORED, "1")
            return
        await asyncio.gather(*(self.mux.execute("SET", self.layout.restored(shard), "1")
                               for shard in self.layout.shards))

    @cached_property
    def _trim_archived(self) -> Script:
        return Script(self.mux, TRIM_ARCHIVED)

    # ------------------------------------------------------------ distributions

    async def lease_distribution(self, distribution_id: str, tag: str, seconds: float) -> bool:
        """Take (or renew) the lease on inviting a distribution's recipients; False when
        another worker holds it."""
        key = f"cv:distributions:{{distributions}}:lease:{distribution_id}"
        ms = max(1, int(seconds * 1000))
        if await self.redis.set(key, tag, nx=True, px=ms):
            return True
        if await self.redis.get(key) == tag:
            await self.redis.pexpire(key, ms)
            return True
        return False

    async def claim_invitation(self, phone: str, digest: str, distribution_id: str, seconds: float) -> bool:
        """Claim sending the invitation of text `digest` to `phone` for a distribution, while its
        recipient's state is not yet in the records database (where duplicate suppression looks):
        two distributions of the same text in two workers at once would both find nothing there.
        True when the claim is the distribution's (taken now, or still its own from a try before)."""
        key = invitation_claim_key(phone, digest)
        if await self.redis.set(key, distribution_id, nx=True, px=max(1, int(seconds * 1000))):
            return True
        return await self.redis.get(key) == distribution_id

    async def release_invitations(self, claims: list[tuple[str, str]]) -> None:
        """Drop claims of (phone, digest) once their recipients' states are written."""
        if claims:
            await self.redis.delete(*(invitation_claim_key(phone, digest) for phone, digest in claims))

    # ------------------------------------------------------------ the local sandbox

    async def sandbox_record(self, message: dict) -> None:
        """Keep a message the sandbox delivered (see cv:sandbox:{sandbox}:messages). Not an
        idempotent write: the pool's one retry after a broken connection may keep it twice,
        which its sid tells (`canvass phone` shows a sid once)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(SANDBOX, json.dumps(message, separators=(",", ":"), ensure_ascii=False))
            pipe.ltrim(SANDBOX, -SANDBOX_KEEP, -1)
            pipe.expire(SANDBOX, SANDBOX_TTL)
            await pipe.execute()

    async def sandbox_messages(self, to: str | None = None) -> list[dict]:
        """The sandbox's messages, oldest first: every number's, or those sent to `to`."""
        messages = [json.loads(raw) for raw in await self.redis.lrange(SANDBOX, 0, -1)]
        return messages if to is None else [m for m in messages if m["to"] == to]


# The fleet's keys and scripts (see the key layout above).
LIVE = "cv:fleet:{fleet}:live"
WORKERS = "cv:fleet:{fleet}:workers"
RELOADS = "cv:fleet:{fleet}:reloads"
STATUSES = "cv:fleet:{fleet}:statuses"
FLEET_BEAT = 2.0  # seconds between a worker's heartbeats
FLEET_TTL = 10  # seconds without a heartbeat after which a worker counts as gone


def _entry_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


async def _chunks(items: AsyncIterator[str], size: int) -> AsyncIterator[list[str]]:
    chunk: list[str] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def metrics_key(server: str) -> str:
    return f"cv:fleet:{{fleet}}:metrics:{server}"


class AnnounceCall(NamedTuple):
    live: str
    workers: str
    flows: str  # JSON {survey id: version}
    by: str  # the announcing worker
    worker_ttl: str
    channel: str  # the reloads channel (not a key: PUBLISH reaches every node)


class BeatCall(NamedTuple):
    workers: str
    live: str
    worker: str
    generation: str
    refused: str  # the latest generation it could not compile, '0' for none
    error: str
    worker_ttl: str


ANNOUNCE = Lua("announce.lua", AnnounceCall)
BEAT = Lua("beat.lua", BeatCall)


ARCHIVE_GROUP = "archiver"
OPT_OUTS = "cv:records:{optouts}"
DELIVERIES = "cv:records:{deliveries}"
RESTORED = "cv:records:{restored}"
RESPONSES_SUFFIX = "}:responses"

class TrimArchivedCall(NamedTuple):
    stream: str
    group: str  # the archiver's consumer group


TRIM_ARCHIVED = Lua("trim_archived.lua", TrimArchivedCall)
