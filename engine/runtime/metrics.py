"""Prometheus counters and histograms for one server process, in the text exposition format.

The workers of `canvass serve --workers N` share one port, so a scrape reaches one of them:
each worker stores its samples in Redis (engine.runtime.fleet's heartbeat, and on every
scrape), and any worker's /metrics renders every worker's series with a `worker` label
(its pid). Totals across workers are Prometheus's sum over that label, e.g.
`sum without (worker) (rate(canvass_messages_in_total[5m]))`: a replaced worker is a new
series, so a restart never looks like a counter going backwards.
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Mapping

Sample = tuple[str, dict[str, str], float]  # name (with _bucket, _sum... suffix), labels, value

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(labels: Mapping[str, str]) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    parts = [f'{name}="{escape(value)}"' for name, value in labels.items()]
    return "{" + ",".join(parts) + "}" if parts else ""


def _lines(samples: list[Sample], extra: Mapping[str, str] | None = None) -> list[str]:
    return [f"{name}{_labels({**labels, **(extra or {})})} {_number(value)}" for name, labels, value in samples]


def _number(value: float) -> str:
    """Exact for whole numbers (a count past a million stays a count), shortest repr otherwise."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_text, labels
        self._values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1) -> None:
        self._values[labels] += amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    kind = "counter"

    def samples(self) -> list[Sample]:
        if not self.label_names and not self._values:
            return [(self.name, {}, 0)]  # an unlabelled counter exists from the start
        return [(self.name, dict(zip(self.label_names, labels, strict=True)), value)
                for labels, value in sorted(self._values.items())]


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help_text, buckets
        self._counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    kind = "histogram"

    def samples(self) -> list[Sample]:
        found: list[Sample] = []
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += count
            found.append((f"{self.name}_bucket", {"le": "+Inf" if bound == float("inf") else f"{bound:g}"}, running))
        return [*found, (f"{self.name}_sum", {}, self._sum), (f"{self.name}_count", {}, running)]


class Metrics:
    """The metrics Canvass exports; one instance per server process."""

    def __init__(self) -> None:
        self.messages_in = Counter("canvass_messages_in_total", "Inbound messages applied, by channel.", ("channel",))
        self.messages_out = Counter("canvass_messages_out_total", "Outbound messages (TwiML replies and REST sends), by channel.", ("channel",))
        self.segments_out = Counter("canvass_sms_segments_out_total", "SMS segments sent (WhatsApp has none).")
        self.send_failures = Counter("canvass_send_failures_total", "REST sends Twilio refused or that failed, by channel.", ("channel",))
        self.send_retries = Counter("canvass_send_retries_total", "REST sends Twilio turned away for now (429, 5xx, unreachable), queued again, by channel.", ("channel",))
        self.send_unknown = Counter("canvass_send_unknown_total", "REST sends whose outcome is unknown (kept, not sent again), by channel.", ("channel",))
        self.sessions_opened = Counter("canvass_sessions_opened_total", "Sessions opened, by survey.", ("survey",))
        self.sessions_closed = Counter("canvass_sessions_closed_total", "Sessions closed, by status.", ("status",))
        self.conflicts = Counter("canvass_commit_conflicts_total", "Commits retried because the conversation changed meanwhile.")
        self.duplicates = Counter("canvass_duplicate_webhooks_total", "Redelivered webhooks, known by their MessageSid's mark.")
        self.reloads = Counter("canvass_reloads_total", "Flow reloads, by result.", ("result",))
        self.step_latency = Histogram("canvass_step_seconds", "Time to apply one message or timer: read, step and commit.")

    def render(self) -> str:
        lines: list[str] = []
        for metric in vars(self).values():
            lines.extend(_header(metric.name, metric.help, metric.kind))
            lines.extend(_lines(metric.samples()))
        return "\n".join(lines) + "\n"

    def samples(self) -> str:
        """Every metric as JSON, to render beside other workers' (render_workers)."""
        return json.dumps([[m.name, m.help, m.kind, m.samples()] for m in vars(self).values()],
                          separators=(",", ":"))


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def render_workers(samples_by_worker: Mapping[str, str]) -> str:
    """Every worker's metrics (Metrics.samples() by pid) in one exposition, labelled `worker`."""
    families: dict[str, tuple[str, str]] = {}
    series: dict[str, list[str]] = defaultdict(list)
    for worker, text in sorted(samples_by_worker.items(), key=lambda item: int(item[0])):
        for name, help_text, kind, samples in json.loads(text):
            families.setdefault(name, (help_text, kind))
            series[name].extend(_lines(samples, {"worker": worker}))
    lines: list[str] = []
    for name, (help_text, kind) in families.items():
        lines.extend([*_header(name, help_text, kind), *series[name]])
    return "\n".join(lines) + "\n"


def redis_gauges(health: dict | None) -> str:
    """Gauges of Redis itself (Store.health()), read at each scrape; None: Redis did not answer."""
    if health is None:
        figures = [("redis_up", "Redis answered this scrape (1) or not (0).", 0)]
    else:
        figures = [
            ("redis_up", "Redis answered this scrape (1) or not (0).", 1),
            ("redis_used_memory_bytes", "Memory Redis uses (INFO used_memory).", health["used_bytes"]),
            ("redis_maxmemory_bytes", "Redis's memory limit, 0 for none; at the limit writes fail.",
             health["max_bytes"]),
            ("redis_aof_enabled", "The append-only file is on (1).", int(health["aof_enabled"])),
            ("redis_aof_last_write_ok", "The last AOF write succeeded (1); 0: Redis refuses writes.",
             int(health["aof_last_write"] == "ok")),
            ("redis_aof_last_rewrite_ok", "The last AOF rewrite succeeded (1).",
             int(health["aof_last_rewrite"] == "ok")),
        ]
    lines = []
    for name, help_text, value in figures:
        lines += [*_header(f"canvass_{name}", help_text, "gauge"), f"canvass_{name} {value}"]
    return "\n".join(lines) + "\n"
