"""The benchmark's table and its verdicts on the targets."""

from __future__ import annotations

from bench.cluster import ARCHIVE_WAIT
from bench.load import ANSWERS
from bench.memory import ANSWERED
from engine.redis.store import REPLIES_TTL, TIMERS


def verdicts(results: dict) -> dict[str, dict]:
    """Each target: the figure, the bound, and whether it was met."""
    web, step, comp, mem = results["webhooks"], results["step"], results["compile"], results["memory"]
    archiver, export = results["records"]["archiver"], results["records"]["export"]
    sending = results["sending"]
    checks = {
        "webhook_ratio": (web["ratio"], ">=", 0.8),
        "cluster_ratio": (results["cluster"]["ratio"], ">=", results["cluster"]["ratio_target"]),
        "web_ratio": (results["web"]["ratio"], ">=", results["web"]["ratio_target"]),
        "first_page_bytes": (results["web"]["first_page_bytes"], "<=", results["web"]["first_page_target"]),
        "step_ratio": (step["ratio"], "<=", step["target"]),
        "compile_ratio": (comp["ratio"], "<=", comp["target"]),
        "bytes_per_conversation": (mem["bytes_per_conversation"], "<=", mem["target"]),
        "archiver_keeps_up_sqlite": (archiver["sqlite"]["keeps_up"], ">=", 1.0),
        "archiver_keeps_up_postgresql": (archiver["postgresql"]["keeps_up"], ">=", 1.0),
        "webhooks_with_archiver": (min(archiver[db]["webhook_ratio"] for db in ("sqlite", "postgresql")), ">=", 0.9),
        "export_rss_ratio": (export["rss_ratio"], "<=", 1.1),
        "import_ratio": (results["contacts_import"]["ratio"], ">=", results["contacts_import"]["ratio_target"]),
        "import_rss_growth": (results["contacts_import"]["rss_growth"], "<=",
                              results["contacts_import"]["growth_target"]),
        "sender_ratio": (sending["overhead"]["ratio"], ">=", sending["overhead"]["target"]),
        "pace_max_window": (sending["pacing"]["max_in_window"], "<=", sending["pacing"]["window_target"]),
        "pace_mean": (sending["pacing"]["mean_per_s"], ">=", sending["pacing"]["mean_target"]),
    }
    return {name: {"value": value, "target": f"{op} {bound:g}",
                   "met": value >= bound if op == ">=" else value <= bound}
            for name, (value, op, bound) in checks.items()}


def _mark(targets: dict, name: str) -> str:
    target = targets[name]
    return f"(target {target['target']}) {'ok' if target['met'] else 'MISSED'}"


def _webhooks(web: dict, targets: dict) -> list[str]:
    shape = web["shape"]
    lines = [
        f"Webhooks: {shape['respondents']} respondents x {shape['messages_per_respondent']} signed messages, "
        f"{shape['concurrency']} in flight, median of {shape['rounds']} round(s)",
        f"  {'':16}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}   CPU µs/msg: server   Redis   load generator busy",
    ]
    for target in ("floor", "canvass"):
        f = web[target]
        lines.append(f"  {target:16}{f['messages_per_s']:9.0f}{f['p50_ms']:9.2f}{f['p99_ms']:9.2f}"
                     f"{f['server_cpu_us_per_message']:21.0f}{f['redis_cpu_us_per_message']:8.0f}"
                     f"{f['load_cpu_share']:22.0%}")
    spread = web["ratio_rounds"]
    lines.append(f"  {'canvass/floor':16}{web['ratio']:9.2f}  {_mark(targets, 'webhook_ratio')}; "
                 f"rounds {min(spread):.2f}-{max(spread):.2f}; server CPU per message {web['cpu_ratio']:.2f}")
    if max(web[t]["load_cpu_share"] for t in ("floor", "canvass")) > 0.9:
        lines.append("  note: the load generator was busy most of the time; the floor may be a lower bound")
    return lines


def _cluster(figures: dict, targets: dict) -> list[str]:
    shape, one, on_cluster = figures["shape"], figures["one"], figures["cluster"]
    lines = [
        f"Webhooks on a Redis Cluster (3 masters, a replica each, AOF fsync always on every node): the webhooks' "
        f"{shape['respondents']} x {shape['messages_per_respondent']} messages, {shape['concurrency']} in flight, "
        f"one worker, median of {shape['rounds']} round(s)",
        f"  {'':16}{'msg/s':>9}{'answered':>10}{'p50 ms':>9}{'p99 ms':>9}   CPU µs/msg: server   Redis",
        f"  {'one Redis':16}{one['sustained_per_s']:9.0f}{one['messages_per_s']:10.0f}{one['p50_ms']:9.2f}"
        f"{one['p99_ms']:9.2f}{one['server_cpu_us_per_message']:21.0f}{one['redis_cpu_us_per_message']:8.0f}",
        f"  {'cluster':16}{on_cluster['sustained_per_s']:9.0f}{on_cluster['messages_per_s']:10.0f}"
        f"{on_cluster['p50_ms']:9.2f}{on_cluster['p99_ms']:9.2f}{on_cluster['server_cpu_us_per_message']:21.0f}"
        f"{on_cluster['masters_cpu_us_per_message']:8.0f}   (masters; replicas "
        f"{on_cluster['replicas_cpu_us_per_message']:.0f})",
    ]
    spread = figures["ratio_rounds"]
    lines.append(f"  {'cluster/one':16}{figures['ratio']:9.2f}{figures['answered_ratio']:10.2f}  "
                 f"{_mark(targets, 'cluster_ratio')}; rounds {min(spread):.2f}-{max(spread):.2f}; "
                 f"server CPU per message {figures['cpu_ratio']:.2f}")
    lines.append("  (msg/s: a round's messages over the time until all were answered and archived; answered: "
                 "the load generator's rate alone)")
    lines.append(f"  {'archived':16}" + ", ".join(
        f"{name} {figures['archived'][target]} of {figures['cluster_respondents']} responses, "
        f"{figures[target]['archive_wait_s']:.1f} s after a round"
        for target, name in (("one", "one Redis"), ("cluster", "cluster")))
        + f" (each round ends once they are, or after {ARCHIVE_WAIT:.0f} s; its CPU counted)")
    idle = figures["idle_cpu_share"]
    lines.append(f"  {'with no load':16}server CPU: one Redis {idle['one']:.1%} of a core, cluster {idle['cluster']:.1%} "
                 "(background tasks polling)")
    total = sum(m["conversations"] for m in figures["spread"]) or 1
    lines += [f"  {'master :' + str(m['port']):16}{m['conversations']:9d} of the run's conversations "
              f"({m['conversations'] / total:.0%}), {m['shards']} of the shards" for m in figures["spread"]]
    return lines


def _web(figures: dict, targets: dict) -> list[str]:
    shape = figures["shape"]
    lines = [
        f"Web survey: {shape['respondents']} respondents x {shape['posts_per_respondent']} page posts (POST, then "
        f"the page its 303 leads to), {shape['concurrency']} in flight, median of {shape['rounds']} round(s)",
        f"  {'':16}{'posts/s':>9}{'p50 ms':>9}{'p99 ms':>9}   CPU µs/post: server   Redis",
    ]
    for target in ("floor", "canvass"):
        f = figures[target]
        lines.append(f"  {target:16}{f['posts_per_s']:9.0f}{f['p50_ms']:9.2f}{f['p99_ms']:9.2f}"
                     f"{f['server_cpu_us_per_message']:22.0f}{f['redis_cpu_us_per_message']:8.0f}")
    spread = figures["ratio_rounds"]
    lines += [
        f"  {'canvass/floor':16}{figures['ratio']:9.2f}  {_mark(targets, 'web_ratio')}; "
        f"rounds {min(spread):.2f}-{max(spread):.2f}",
        f"  {'first page':16}{figures['first_page_bytes']:9d} B  {_mark(targets, 'first_page_bytes')}",
    ]
    return lines


def _records(records: dict, targets: dict) -> list[str]:
    archiver, export, shape = records["archiver"], records["export"], records["shape"]
    lines = [
        f"Records database: {shape['respondents']} respondents a round, {shape['concurrency']} in flight, "
        f"median of {shape['rounds']} round(s); each archiver starts a round's responses behind",
        f"  {'':16}{'msg/s':>9}{'vs none':>9}{'done/s':>9}{'archived/s':>12}{'ratio':>8}{'drain s':>9}",
        f"  {'no archiver':16}{archiver['none']['messages_per_s']:9.0f}",
    ]
    for db in ("sqlite", "postgresql"):
        a = archiver[db]
        lines.append(f"  {'into ' + db:16}{a['messages_per_s']:9.0f}{a['webhook_ratio']:9.2f}{a['completed_per_s']:9.0f}"
                     f"{a['archived_per_s']:12.0f}{a['keeps_up']:8.2f}{a['drain_s']:9.2f}  "
                     f"{_mark(targets, 'archiver_keeps_up_' + db)}")
    lines.append(f"  webhooks with the archiver / without {_mark(targets, 'webhooks_with_archiver')}")
    small, large = export["small"], export["large"]
    lines += [
        "Export as CSV (canvass export, SQLite, to /dev/null)",
        *(f"  {e['rows']:>9} rows{e['seconds']:9.1f} s{e['rows_per_s']:9.0f} rows/s   peak RSS "
          f"{e['peak_rss_bytes'] / 2**20:6.1f} MiB" for e in (small, large)),
        f"  {'peak RSS ratio':16}{export['rss_ratio']:9.2f}  {_mark(targets, 'export_rss_ratio')}",
    ]
    return lines


def render(results: dict) -> str:
    web, step, comp, mem, targets = (results[k] for k in ("webhooks", "step", "compile", "memory", "targets"))
    pinning = results["pinning"]
    where = (f"server on core {pinning['server_core']}, load generator and Redis on core {pinning['load_core']}"
             if pinning["server_core"] is not None else pinning["note"])
    answered = ", ".join(f"'{answer}'" for answer in ANSWERS[:ANSWERED])
    lines = [
        f"Canvass benchmarks ({results['mode']} run, {results['cores']} cores; {where})",
        "",
        *_webhooks(web, targets),
        "",
        *_cluster(results["cluster"], targets),
        "",
        *_web(results["web"], targets),
        "",
        "Step cost against flow size",
        f"  {'10 questions':16}{step['us_per_step']['10']:9.1f} µs/step",
        f"  {'1000 questions':16}{step['us_per_step']['1000']:9.1f} µs/step",
        f"  {'ratio':16}{step['ratio']:9.2f}  {_mark(targets, 'step_ratio')}",
        "",
        "Compile cost against flow size (each compile from cold CPU caches; warm: back to back)",
        f"  {'':16}{'cold':>9}    {'warm':>9}",
        f"  {'100 questions':16}{comp['ms_per_compile']['100']:9.1f} ms {comp['warm']['ms_per_compile']['100']:9.1f} ms",
        f"  {'1000 questions':16}{comp['ms_per_compile']['1000']:9.1f} ms {comp['warm']['ms_per_compile']['1000']:9.1f} ms",
        f"  {'ratio':16}{comp['ratio']:9.2f}    {comp['warm']['ratio']:9.2f}     {_mark(targets, 'compile_ratio')} (on cold)",
        f"  Python bytecodes run: {comp['bytecodes']['100'] / 1e6:.2f} M and {comp['bytecodes']['1000'] / 1e6:.2f} M, "
        f"ratio {comp['bytecode_ratio']:.2f} (the work itself: no noise, no caches)",
        "",
        f"Redis memory per open conversation (INFO used_memory growth over {mem['conversations']:,} conversations "
        f"of the 5-question survey: access code, answers {answered}; filled in {mem['fill_seconds']:.0f} s)",
        f"  {'all in, at rest':16}{mem['bytes_per_conversation']:9.0f} B  {_mark(targets, 'bytes_per_conversation')}; "
        f"{mem['keys_per_conversation']:.2f} keys each",
        f"  {'just filled':16}{mem['just_filled']['bytes_per_conversation']:9.0f} B  (the replies of those that moved "
        f"in the last {REPLIES_TTL} s still kept; {mem['just_filled']['keys_per_conversation']:.2f} keys each)",
        f"  {'its keys':16}{mem['parts']['own_keys']:9.0f} B  (MEMORY USAGE: name, value, keyspace entry)",
        f"  {'its timer':16}{mem['parts']['timer']:9.0f} B  (its member of {TIMERS})",
        f"  {'keyspace':16}{mem['parts']['keyspace']:9.0f} B  (the rest: hash-table buckets, TTL entries)",
        "",
        *_records(results["records"], targets),
    ]
    return "\n".join([*lines, "", *_sending(results["sending"], targets), "",
                      *_contacts_import(results["contacts_import"], targets)])


def _sending(figures: dict, targets: dict) -> list[str]:
    overhead, pacing = figures["overhead"], figures["pacing"]
    canvass, floors = overhead["canvass"], overhead["floor"]
    return [
        f"Sending: {overhead['invitations']} invitations to the fake Twilio, pacing off, "
        f"{overhead['in_flight']} requests in flight",
        f"  {'':16}{'msg/s':>9}{'CPU µs/msg':>12}   fake Twilio busy",
        f"  {'a distribution':16}{canvass['messages_per_s']:9.0f}{canvass['server_cpu_us_per_message']:12.0f}"
        f"{canvass['fake_cpu_share']:19.0%}   (end to end, no target: first arrival after "
        f"{canvass['first_arrival_s']:.1f} s, done after {canvass['done_s']:.1f} s)",
        *_sending_rounds(floors, overhead["rounds"]),
        f"  {'canvass/floor':16}{overhead['ratio']:9.2f}  {_mark(targets, 'sender_ratio')}, the median round; "
        f"CPU per message, floor/canvass: {overhead['cpu_ratio']:.2f} (no target)",
        *_at_latency(overhead["at_latency"]),
        f"Pacing: {pacing['invitations']} invitations at {pacing['rate']} messages/s from one number, "
        f"{pacing['workers']} workers",
        f"  {'busiest second':16}{pacing['max_in_window']:9d}  {_mark(targets, 'pace_max_window')}",
        f"  {'mean msg/s':16}{pacing['mean_per_s']:9.1f}  {_mark(targets, 'pace_mean')} "
        f"(over {pacing['span_s']:.1f} s; first arrival after {pacing['first_arrival_s']:.1f} s)",
    ]


def _sending_rounds(floors: list[dict], rounds: list[dict]) -> list[str]:
    """The floors and, between each two, a run of the senders with its ratio to their mean."""
    def floor_line(found: dict) -> str:
        return (f"  {'floor':16}{found['span_messages_per_s']:9.0f}{found['client_cpu_us_per_message']:12.0f}"
                f"{found['fake_cpu_share']:19.0%}   (a bare aiohttp client)")
    lines = [floor_line(floors[0])]
    for found, after in zip(rounds, floors[1:], strict=True):
        senders = found["senders"]
        lines += [f"  {'canvass senders':16}{senders['span_messages_per_s']:9.0f}"
                  f"{senders['server_cpu_us_per_message']:12.0f}{'':19}   {found['ratio']:.2f} of the floors around "
                  "it (the outbox drained: claim, begin, request, finish, delivery noted; Redis "
                  f"{senders['redis_cpu_us_per_message']:.0f} µs and {senders['aof_bytes_per_message']:.0f} AOF "
                  "bytes a message)", floor_line(after)]
    return lines


def _at_latency(figures: dict) -> list[str]:
    floor, senders = figures["floor"], figures["senders"]
    return [
        f"  at Twilio's latency ({figures['latency_s'] * 1000:.0f} ms an answer, {figures['messages']} messages each; "
        f"in flight, at most {figures['ceiling_messages_per_s']:.0f} msg/s):",
        f"  {'floor':16}{figures['floor_messages_per_s']:9.0f}{floor['client_cpu_us_per_message']:12.0f}",
        f"  {'canvass senders':16}{figures['senders_messages_per_s']:9.0f}{senders['server_cpu_us_per_message']:12.0f}"
        f"{'':19}   {figures['ratio']:.2f} of the floor (no target)",
    ]


def _contacts_import(figures: dict, targets: dict) -> list[str]:
    return [
        f"Contact import: {figures['rows']} rows ({figures['file_mb']:.0f} MB of CSV, US and UK numbers) "
        "into SQLite",
        f"  {'':16}{'rows/s':>9}{'CPU µs/row':>12}",
        f"  {'floor':16}{figures['floor_rows_per_s']:9.0f}{figures['floor_cpu_us_per_row']:12.1f}"
        "   (csv + phonenumbers parse, validate, format)",
        f"  {'canvass':16}{figures['canvass_rows_per_s']:9.0f}{figures['canvass_cpu_us_per_row']:12.1f}"
        f"   (canvass contacts import, less {figures['startup_s']:.1f} s of start)",
        f"  {'canvass/floor':16}{figures['ratio']:9.2f}  {_mark(targets, 'import_ratio')}",
        f"  {'peak RSS':16}{figures['peak_rss_mb']:9.0f} MB, {figures['peak_rss_mb_tenth']:.0f} MB for a tenth "
        f"of the rows: x{figures['rss_growth']:.2f} {_mark(targets, 'import_rss_growth')}",
    ]
