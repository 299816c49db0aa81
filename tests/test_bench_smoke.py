"""bench/run --quick runs end to end and writes every figure; no timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FIGURES = {
    "webhooks": ["ratio", "cpu_ratio", "floor.messages_per_s", "floor.p50_ms", "floor.p99_ms",
                 "floor.server_cpu_us_per_message", "canvass.messages_per_s", "canvass.p50_ms",
                 "canvass.p99_ms", "canvass.server_cpu_us_per_message", "canvass.redis_cpu_us_per_message"],
    "web": ["ratio", "first_page_bytes", "floor.posts_per_s", "floor.p50_ms", "floor.server_cpu_us_per_message",
            "canvass.posts_per_s", "canvass.p50_ms", "canvass.p99_ms", "canvass.server_cpu_us_per_message"],
    "cluster": ["ratio", "cpu_ratio", "one.messages_per_s", "one.p50_ms", "one.p99_ms", "one.server_cpu_us_per_message",
                "one.redis_cpu_us_per_message", "cluster.messages_per_s", "cluster.p50_ms", "cluster.p99_ms",
                "cluster.server_cpu_us_per_message", "cluster.masters_cpu_us_per_message",
                "cluster.replicas_cpu_us_per_message", "cluster.sustained_per_s", "one.sustained_per_s",
                "answered_ratio"],
    "step": ["us_per_step.10", "us_per_step.1000", "ratio"],
    "compile": ["ms_per_compile.100", "ms_per_compile.1000", "ratio"],
    "memory": ["bytes_per_conversation", "keys_per_conversation", "parts.own_keys", "parts.timer", "fill_seconds",
               "just_filled.bytes_per_conversation"],
    "records": ["archiver.none.messages_per_s", *(f"archiver.{db}.{figure}" for db in ("sqlite", "postgresql")
                for figure in ("messages_per_s", "webhook_ratio", "completed_per_s", "archived_per_s", "keeps_up")),
                "export.small.rows_per_s", "export.large.rows_per_s", "export.small.peak_rss_bytes",
                "export.large.peak_rss_bytes", "export.rss_ratio"],
    "contacts_import": ["floor_rows_per_s", "canvass_rows_per_s", "ratio", "peak_rss_mb", "peak_rss_mb_tenth",
                        "rss_growth", "floor_cpu_us_per_row", "canvass_cpu_us_per_row"],
    "sending": ["overhead.ratio", "overhead.cpu_ratio", "overhead.at_latency.ratio", "overhead.floor_messages_per_s", "overhead.canvass.messages_per_s",
                "overhead.senders.span_messages_per_s", "overhead.senders.server_cpu_us_per_message",
                "overhead.senders.redis_cpu_us_per_message", "overhead.senders.aof_bytes_per_message",
                "overhead.canvass.server_cpu_us_per_message", "pacing.max_in_window", "pacing.mean_per_s",
                "pacing.span_s"],
}
TARGETS = ["webhook_ratio", "cluster_ratio", "web_ratio", "first_page_bytes", "step_ratio", "compile_ratio", "bytes_per_conversation",
           "archiver_keeps_up_sqlite", "archiver_keeps_up_postgresql", "webhooks_with_archiver", "export_rss_ratio",
           "import_ratio", "import_rss_growth", "sender_ratio", "pace_max_window", "pace_mean"]


def figure(results: dict, part: str, path: str) -> float:
    value = results[part]
    for name in path.split("."):
        value = value[name]
    return value


def test_quick_run_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([str(REPO / "bench" / "run"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    for part, paths in FIGURES.items():
        for path in paths:
            value = figure(results, part, path)
            # CPU time comes in 10 ms ticks: over a quick round a Redis (one, a cluster's
            # masters, its replicas) may use less than one.
            redis_cpu = ("redis_cpu_us_per_message", "masters_cpu_us_per_message", "replicas_cpu_us_per_message")
            least = 0 if path.endswith(redis_cpu) else 1e-12
            assert isinstance(value, int | float) and math.isfinite(value) and value >= least, (part, path, value)
    webhooks = results["webhooks"]
    for target in ("floor", "canvass"):
        assert all(r["completed"] == r["respondents"] and not r["errors"] for r in webhooks["rounds"][target])
    on_cluster = results["cluster"]
    for target in ("one", "cluster"):
        assert all(r["completed"] == r["respondents"] and not r["errors"] for r in on_cluster["rounds"][target])
    # every conversation the run opened on the cluster is on one of its 3 masters, every shard too
    assert len(on_cluster["spread"]) == 3
    assert sum(m["conversations"] for m in on_cluster["spread"]) == on_cluster["cluster_respondents"] == 48
    assert sum(m["shards"] for m in on_cluster["spread"]) == 128
    assert on_cluster["archived"] == {"one": 48, "cluster": 48}  # both servers archived every response
    assert results["memory"]["conversations"] == 300
    assert sorted(results["targets"]) == sorted(TARGETS)
    assert all(isinstance(results["targets"][name]["met"], bool) for name in TARGETS)
    assert results["records"]["export"]["large"]["rows"] > results["records"]["export"]["small"]["rows"]
    assert results["contacts_import"]["rows"] == 10_000
    assert results["sending"]["overhead"]["canvass"]["messages"] == 300
    assert results["sending"]["pacing"]["invitations"] == 250
    for target in ("floor", "canvass"):
        assert all(r["completed"] == r["respondents"] == 20 and not r["errors"] for r in results["web"]["rounds"][target])
    for heading in ("Webhooks:", "Webhooks on a Redis Cluster", "cluster/one", "master :", "Web survey:", "first page", "canvass/floor", "Step cost", "Compile cost", "Redis memory", "Records database",
                    "Export as CSV", "Sending:", "Pacing:", "Contact import"):
        assert heading in done.stdout


def test_bad_arguments_get_a_clear_error():
    done = subprocess.run([str(REPO / "bench" / "run"), "--rounds", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--rounds must be between 1 and 100000" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run([str(REPO / "bench" / "run"), "--conversations", "10"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--conversations must be between 100 and 2000000" in done.stderr


def test_the_cluster_part_alone_refuses_bad_arguments():
    done = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "bench.cluster", "--respondents", "0"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert "--respondents must be between 1 and 100000" in done.stderr
    assert "Traceback" not in done.stderr
