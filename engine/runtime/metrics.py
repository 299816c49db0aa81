"""Prometheus counters and histograms for one server process, in the text exposition format."""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    parts = [f'{name}="{escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_text, labels
        self._values: dict[tuple[str, ...], float] = defaultdict(float)

    def inc(self, *labels: str, amount: float = 1) -> None:
        self._values[labels] += amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.label_names and not self._values:
            lines.append(f"{self.name} 0")  # an unlabelled counter exists from the start
        for labels, value in sorted(self._values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {value:g}")
        return lines


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

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), self._counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            lines.append(f'{self.name}_bucket{{le="{le}"}} {running}')
        lines.append(f"{self.name}_sum {self._sum:g}")
        lines.append(f"{self.name}_count {running}")
        return lines


class Metrics:
    """The metrics Canvass exports; one instance per server process."""

    def __init__(self) -> None:
        self.messages_in = Counter("canvass_messages_in_total", "Inbound messages applied, by channel.", ("channel",))
        self.messages_out = Counter("canvass_messages_out_total", "Outbound messages (TwiML replies and REST sends), by channel.", ("channel",))
        self.segments_out = Counter("canvass_sms_segments_out_total", "SMS segments sent (WhatsApp has none).")
        self.send_failures = Counter("canvass_send_failures_total", "REST sends Twilio refused or that failed, by channel.", ("channel",))
        self.sessions_opened = Counter("canvass_sessions_opened_total", "Sessions opened, by survey.", ("survey",))
        self.sessions_closed = Counter("canvass_sessions_closed_total", "Sessions closed, by status.", ("status",))
        self.conflicts = Counter("canvass_commit_conflicts_total", "Commits retried because the conversation changed meanwhile.")
        self.duplicates = Counter("canvass_duplicate_webhooks_total", "Redelivered webhooks answered from the dedupe record.")
        self.reloads = Counter("canvass_reloads_total", "Flow reloads, by result.", ("result",))
        self.step_latency = Histogram("canvass_step_seconds", "Time to apply one message or timer: read, step and commit.")

    def render(self) -> str:
        lines: list[str] = []
        for metric in vars(self).values():
            lines.extend(metric.render())
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
        lines += [f"# HELP canvass_{name} {help_text}", f"# TYPE canvass_{name} gauge", f"canvass_{name} {value}"]
    return "\n".join(lines) + "\n"
