"""Loaded flows by survey id and version: the live set, atomic reloads and pinned versions.

The live set (one flow per survey id, plus access codes) is an immutable snapshot swapped
in one assignment, so a request sees either the old set or the new one, never a mix.
Before a set goes live, every version's source is stored in Redis; a session pinned to a
version this process does not hold (started before a reload, on another worker, or
before a restart) is rebuilt from that stored source and cached.

Which versions are live is a fact in Redis, not in each process: a reload compiles the
flows on disk, stores their sources, then announces {survey id: version} as the next
generation of the live set (Store.announce_live). Every other worker and server sharing
the Redis takes that generation from the stored sources (`take`), never from its own
disk, so all run the same versions; one that cannot compile them keeps what it had and
says so (`refused`): a bad flow never replaces a good one.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dsl import diagnostics
from dsl.errors import Diagnostic, FlowError
from dsl.folder import access_key, clashes, flow_files
from dsl.load import read_source
from engine.flow import Flow, flow_from_source, load_flow
from engine.redis.store import RESPONDENT_MARGIN, Store

log = logging.getLogger("canvass.registry")

PINNED_CACHE = 256  # compiled versions kept besides the live ones
NO_FLOWS = diagnostics.NO_FLOWS.code
MISSING_SOURCE = diagnostics.MISSING_SOURCE.code
OTHER_VERSION = diagnostics.OTHER_VERSION.code


class ReloadFailed(Exception):
    """Nothing changed: the flows on disk have errors. `report` is the rendered text."""

    def __init__(self, diagnostics: list[Diagnostic], report: str):
        super().__init__(report)
        self.diagnostics = diagnostics
        self.report = report


@dataclass(frozen=True)
class LiveSet:
    flows: Mapping[str, Flow] = field(default_factory=dict)  # survey id -> live flow
    paths: Mapping[str, str] = field(default_factory=dict)  # survey id -> file it came from
    codes: Mapping[str, Flow] = field(default_factory=dict)  # casefolded access code -> flow
    loaded_at: float = 0.0
    generation: int = 0  # its generation in Redis (0: not announced)


@dataclass(frozen=True)
class Announced:
    live: LiveSet
    workers: tuple[str, ...]  # the other workers alive when it was announced: they must take it


def worker_id() -> str:
    """A name for one registry (one server process), unique across the hosts sharing a Redis."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def codes_of(flows: Mapping[str, Flow]) -> dict[str, Flow]:
    """Every access code of every flow (one per language it speaks, at most)."""
    return {code: flow for flow in flows.values() for code in flow.access_codes}


def source_ttl(flow: Flow) -> int:
    """How long a version's stored source must outlive a session started on it now."""
    return int(flow.survey.expires_after) + RESPONDENT_MARGIN


def compile_dir(flows_dir: Path) -> tuple[LiveSet, list[Diagnostic], list[str]]:
    """Every flow file in `flows_dir` compiled, or the diagnostics (and rendered report lines).

    The same survey may be written in both forms (x.yaml and x.survey); that is fine as
    long as both say the same. The clashes between flows are dsl.folder's, as `canvass check DIR` sees them.
    """
    diagnostics: list[Diagnostic] = []
    rendered: list[str] = []

    def fail(found: list[Diagnostic], path: Path) -> None:
        try:
            source = read_source(path)
        except FlowError:
            source = None
        diagnostics.extend(found)
        rendered.extend(d.render(source) for d in found)

    if not flows_dir.is_dir():
        found = [Diagnostic(str(flows_dir), 0, 0, NO_FLOWS, "the flows directory does not exist")]
        return LiveSet(), found, [d.render() for d in found]
    compiled: list[tuple[str, Flow]] = []
    for path in flow_files(flows_dir):
        try:
            compiled.append((str(path), load_flow(path)))
        except FlowError as err:
            fail(err.diagnostics, path)
    found, refused = clashes([(path, flow.survey) for path, flow in compiled])
    for diagnostic in found:
        fail([diagnostic], Path(diagnostic.path))
    flows: dict[str, Flow] = {}
    paths: dict[str, str] = {}
    for path, flow in compiled:
        if path not in refused and flow.id not in flows:
            flows[flow.id], paths[flow.id] = flow, path
    codes = codes_of(flows)
    if not flows and not diagnostics:
        found = [Diagnostic(str(flows_dir), 0, 0, NO_FLOWS, "the flows directory has no flow files",
                            "flows are *.yaml, *.yml or *.survey files")]
        return LiveSet(), found, [d.render() for d in found]
    return LiveSet(flows, paths, codes), diagnostics, rendered


class Registry:
    """The engine's FlowLookup, plus reloading and pinned versions."""

    def __init__(self, flows_dir: str | Path, store: Store, clock: Callable[[], float]):
        self.flows_dir = Path(flows_dir)
        self.store = store
        self.clock = clock
        self.live = LiveSet()
        self.published = False  # whether the live set's sources are known to be in Redis
        self.worker = worker_id()
        self.refused: tuple[int, str] = (0, "")  # the latest generation that failed to compile here, why
        self._pinned: OrderedDict[tuple[str, str], Flow] = OrderedDict()

    # ------------------------------------------------------------ FlowLookup

    def get(self, survey_id: str, version: str | None = None) -> Flow | None:
        flow = self.live.flows.get(survey_id)
        if version is None or (flow is not None and flow.version == version):
            return flow
        pinned = self._pinned.get((survey_id, version))
        if pinned is not None:
            self._pinned.move_to_end((survey_id, version))
        return pinned

    def by_access_code(self, code: str) -> Flow | None:
        return self.live.codes.get(access_key(code))

    # ------------------------------------------------------------ loading

    def _compile(self) -> LiveSet:
        loaded, diagnostics, rendered = compile_dir(self.flows_dir)
        if diagnostics:
            raise ReloadFailed(diagnostics, "\n".join(rendered))
        return LiveSet(loaded.flows, loaded.paths, loaded.codes, self.clock())

    async def reload(self) -> LiveSet:
        return (await self.announce()).live

    async def announce(self) -> Announced:
        """Compile and check every flow, store their sources, announce them as the live set
        of every worker, then swap them all in here at once.

        ReloadFailed (and no change) when any file has an error. Redis errors propagate
        and also change nothing (unless the announcement itself landed: then every worker,
        this one included at its next heartbeat, takes it)."""
        return await self._announce(self._compile())

    async def announce_current(self) -> Announced:
        """Announce what runs here (Redis has no live set: it was flushed, or was unreachable at startup)."""
        return await self._announce(self.live)

    async def _announce(self, loaded: LiveSet) -> Announced:
        await self._publish(loaded)  # sources first: whoever takes the announcement needs them
        generation, workers = await self.store.announce_live(
            {flow.id: flow.version for flow in loaded.flows.values()}, self.worker)
        announced = LiveSet(loaded.flows, loaded.paths, loaded.codes, self.clock(), generation)
        if generation > self.live.generation:  # else a newer one was taken meanwhile
            self._swap(announced)
        return Announced(announced, tuple(w for w in workers if w != self.worker))

    async def take(self) -> bool:
        """Go live with the set announced in Redis, when it is newer than ours; False when there
        is none. FlowError (and no change) when a version cannot be rebuilt here."""
        generation, versions = await self.store.live_flows()
        if generation == 0:
            return False
        if generation <= self.live.generation or generation == self.refused[0]:
            return True
        flows: dict[str, Flow] = {}
        paths: dict[str, str] = {}
        try:
            for survey_id, version in versions.items():
                flows[survey_id], paths[survey_id] = await self._rebuild(survey_id, version)
        except FlowError as err:
            self.refused = (generation, str(err))
            raise
        self._swap(LiveSet(flows, paths, codes_of(flows), self.clock(), generation))
        self.refused = (0, "")
        return True

    async def _rebuild(self, survey_id: str, version: str) -> tuple[Flow, str]:
        """A version of the live set announced elsewhere, with its path: from memory when this
        process holds it, else compiled from the source stored in Redis."""
        stored = await self.store.load_flow(survey_id, version)
        path = (stored or {}).get("path") or self.live.paths.get(survey_id, "")
        flow = self.get(survey_id, version)
        if flow is not None:
            return flow, path
        if stored is None:
            raise FlowError([Diagnostic(path or survey_id, 0, 0, MISSING_SOURCE,
                                        f"survey '{survey_id}' version {version} is not stored in Redis")])
        flow = flow_from_source(stored["source"], stored["form"], path or "<stored>")
        if flow.version != version:
            raise FlowError([Diagnostic(path or survey_id, 0, 0, OTHER_VERSION,
                                        f"survey '{survey_id}' version {version} compiles here as {flow.version}",
                                        diagnostics.OTHER_VERSION.hint)])
        return flow, path

    def load_unpublished(self) -> LiveSet:
        """Go live without Redis (at startup while it is unreachable); `publish` stores later."""
        loaded = self._compile()
        self._swap(loaded)
        self.published = False
        return loaded

    def _swap(self, loaded: LiveSet) -> None:
        for flow in self.live.flows.values():  # replaced versions stay loadable for their sessions
            replacement = loaded.flows.get(flow.id)
            if replacement is None or replacement.version != flow.version:
                self._remember((flow.id, flow.version), flow)
        self.live = loaded

    async def publish(self) -> None:
        """Store (or refresh the TTL of) every live version's source in Redis."""
        await self._publish(self.live)

    async def _publish(self, loaded: LiveSet) -> None:
        for flow in loaded.flows.values():
            await self.store.save_flow(flow.id, flow.version, flow.source, flow.form,
                                       loaded.paths.get(flow.id, ""), source_ttl(flow))
        self.published = True

    async def republish(self, survey_id: str, version: str) -> None:
        """Store one version's source again (a commit found it missing from Redis)."""
        flow = self.get(survey_id, version)
        if flow is not None:
            await self.store.save_flow(flow.id, version, flow.source, flow.form,
                                       self.live.paths.get(flow.id, ""), source_ttl(flow))

    async def pin(self, survey_id: str, version: str) -> Flow | None:
        """The flow a session is pinned to, rebuilt from Redis when this process lacks it."""
        flow = self.get(survey_id, version)
        if flow is not None:
            return flow
        stored = await self.store.load_flow(survey_id, version)
        if stored is None:
            log.error("flow %s version %s is not stored in Redis; its sessions cannot go on",
                      survey_id, version)
            return None
        try:
            flow = flow_from_source(stored["source"], stored["form"], stored.get("path") or "<stored>")
        except FlowError as err:
            log.error("stored flow %s version %s no longer compiles:\n%s", survey_id, version, err)
            return None
        if flow.version != version:
            log.warning("stored flow %s version %s rebuilds as version %s; keeping its sessions on it",
                        survey_id, version, flow.version)
        self._remember((survey_id, version), flow)
        return flow

    def _remember(self, key: tuple[str, str], flow: Flow) -> None:
        self._pinned[key] = flow
        self._pinned.move_to_end(key)
        while len(self._pinned) > PINNED_CACHE:
            self._pinned.popitem(last=False)

    def describe(self) -> dict:
        live = self.live
        return {
            "loaded_at": live.loaded_at,
            "generation": live.generation,
            "worker": self.worker,
            "flows": [
                {"id": flow.id, "version": flow.version, "path": live.paths.get(flow.id, ""),
                 "form": flow.form, "title": flow.survey.title, "access_code": flow.survey.access_code}
                for flow in sorted(live.flows.values(), key=lambda f: f.id)
            ],
            "pinned": [{"id": sid, "version": version} for sid, version in self._pinned],
        }
