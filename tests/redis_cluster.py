"""A real Redis Cluster for the tests: three masters with a replica each, from Debian's
`redis-server`, on 127.0.0.1, joined by `redis-cli --cluster create`.

Each node is a RedisServer (conftest) with cluster mode on, its nodes.conf in its own folder.
A node's cluster bus listens on its port + 10000, so both must be free. The helpers move
slots (`redis-cli --cluster reshard`, or one slot by hand to leave it half-migrated for an
ASK) and kill a master until its replica has taken over. bench/cluster.py starts the same
cluster with nodes of its own (pinned to a core, the shipped AOF kept), so nothing here
needs pytest.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from engine.tools.local_redis import RedisMissing

# How long a silent master has before its replica takes over. A master blocks while MIGRATE
# waits for its target: on two busy cores a second was too short (a reshard under load saw
# masters marked failed, and the cluster went down mid-way).
NODE_TIMEOUT_MS = 5000
BUS_OFFSET = 10000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + BUS_OFFSET > 65535:
            port -= BUS_OFFSET + 1000
        if port > 1024 and not ({port, port + BUS_OFFSET} & taken) and _bindable(port) \
                and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RedisMissing("redis-cli is not installed: install Debian's redis-tools package (./dev does)")
    return found


class RedisCluster:
    """Six cluster nodes; `masters` and `replicas` are read from the cluster as it is now."""

    def __init__(self, directory: Path, server_class: type, persistence: tuple[str, ...] = ("--appendonly", "no")):
        """`server_class(folder, port)`: a node with `overrides`, start(), stop() and its
        Popen as `process`; `persistence`: the options over the shipped file's AOF (the tests
        keep nothing)."""
        taken: set[int] = set()
        self.nodes = []
        for n in range(6):
            port = free_cluster_port(taken)
            taken.update((port, port + BUS_OFFSET))
            node = server_class(directory / f"node{n}", port)
            node.overrides = ("--save", "", *persistence, "--cluster-enabled", "yes",
                              "--cluster-config-file", str(directory / f"node{n}" / "nodes.conf"),
                              "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                              # a replica syncs at once, and may always take over
                              "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0")
            self.nodes.append(node)

    @property
    def url(self) -> str:
        """The URL of one master: all Canvass is told."""
        return f"redis://127.0.0.1:{self.masters()[0]}/0"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        self.cli("--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes")
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def heal(self) -> None:
        """Make the cluster whole for the next test, whatever the last one left: killed nodes
        are started again, slots left migrating by a broken reshard are fixed (`redis-cli
        --cluster fix`), and a cluster still not ok is built afresh, so that one failed test
        never fails the ones after it."""
        try:
            self.revive()
            if self.problems():
                self.cli("--cluster", "fix", f"127.0.0.1:{self.masters()[0]}", "--cluster-yes")
            self.wait_ok()
        except RuntimeError as err:
            print(f"the test cluster was broken, built afresh: {err}")
            self.stop()
            for node in self.nodes:
                shutil.rmtree(node.directory, ignore_errors=True)
            self.start()

    def cli(self, *argv: str, timeout: float = 120) -> str:
        done = subprocess.run([_cli(), *argv], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0 or "[ERR]" in done.stdout:
            raise RuntimeError(f"redis-cli {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def problems(self) -> list[str]:
        """What `redis-cli --cluster check` warns of (open slots, slots not covered); [] if none."""
        done = subprocess.run([_cli(), "--cluster", "check", f"127.0.0.1:{self.masters()[0]}"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return [line for line in done.stdout.splitlines() if "[WARNING]" in line or "[ERR]" in line]

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def _alive(self):
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def _nodes_view(self) -> list[dict]:
        """CLUSTER NODES as one live node sees it: [{id, port, flags, master, slots}]."""
        for node in self._alive():
            try:
                with self.client(node.port) as client:
                    text = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            return [_node_line(line) for line in text.splitlines() if line.strip()]
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[int]:
        """The ports of the masters that serve slots, alive ones first."""
        alive = {node.port for node in self._alive()}
        ports = [n["port"] for n in self._nodes_view() if "master" in n["flags"] and "fail" not in n["flags"]
                 and n["slots"] and n["port"] in alive]
        return sorted(ports)

    def node_id(self, port: int) -> str:
        return next(n["id"] for n in self._nodes_view() if n["port"] == port)

    def master_of_slot(self, slot: int) -> int:
        with self.client(self.masters()[0]) as client:
            for start, end, master in _slots(client):
                if start <= slot <= end:
                    return master
        raise RuntimeError(f"slot {slot} is served by no node")

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok and agrees on who serves each slot, and
        every replica is in sync with its master."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                views = []
                for node in self._alive():
                    with self.client(node.port) as client:
                        if "cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                            raise redis.RedisError(f"node {node.port} says the cluster is not ok")
                        views.append(sorted(_slots(client)))
                        replication = client.info("replication")
                        if replication["role"] == "slave" and replication["master_link_status"] != "up":
                            raise redis.RedisError(f"replica {node.port} is not in sync with its master")
                if views and all(view == views[0] for view in views):
                    return
                waiting_for = "the nodes to agree on who serves each slot"
            except redis.RedisError as err:
                waiting_for = str(err)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok in {timeout:.0f}s: "
                                   f"{waiting_for}\n{self.describe()}")
            time.sleep(0.1)

    def describe(self) -> str:
        """Each node: alive or not, its cluster_state, and CLUSTER NODES as it sees it, for a failure."""
        lines = []
        for node in self.nodes:
            if node not in self._alive():
                lines.append(f"node {node.port}: down")
                continue
            try:
                with self.client(node.port) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    state = next(line for line in info.splitlines() if line.startswith("cluster_state"))
                    lines += [f"node {node.port}: {state.strip()}, and as it sees the cluster:",
                              client.execute_command("CLUSTER", "NODES").strip()]
            except redis.RedisError as err:
                lines.append(f"node {node.port}: does not answer ({err})")
        return "\n".join(lines)

    def reshard(self, source: int, target: int, slots: int) -> None:
        """Move `slots` slots from master `source` to master `target` (ports), keys and all."""
        self.cli("--cluster", "reshard", f"127.0.0.1:{source}", "--cluster-from", self.node_id(source),
                 "--cluster-to", self.node_id(target), "--cluster-slots", str(slots), "--cluster-yes")
        self.wait_ok()

    def begin_migration(self, slot: int, target: int) -> int:
        """Leave `slot` half-migrated towards master `target`: MIGRATING on its owner,
        IMPORTING on the target, no key moved yet. The owner's port."""
        source = self.master_of_slot(slot)
        with self.client(target) as to:
            to.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        with self.client(source) as owner:
            owner.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        return source

    def migrate_key(self, key: str, source: int, target: int) -> None:
        with self.client(source) as owner:
            owner.execute_command("MIGRATE", "127.0.0.1", target, key, 0, 5000)

    def finish_migration(self, slot: int, target: int) -> None:
        """Give `slot` to master `target` on every master (its keys must have moved)."""
        owner = self.node_id(target)
        for port in self.masters():
            with self.client(port) as client:
                client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner)
        self.wait_ok()

    def kill_master(self, port: int, timeout: float = 30) -> int:
        """SIGKILL master `port`, wait until its replica has taken over its slots; the new master's port."""
        replica = next(n["port"] for n in self._nodes_view() if n["master"] == self.node_id(port))
        node = next(node for node in self.nodes if node.port == port)
        node.process.kill()
        node.process.wait()
        node.process = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client(replica) as client:
                    if client.execute_command("ROLE")[0] == "master":
                        break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica} of {port} was not promoted")
            time.sleep(0.05)
        self.wait_ok(timeout)
        return replica

    def revive(self) -> None:
        """Start every killed node again: from its nodes.conf it rejoins as a replica."""
        for node in self.nodes:
            if node.process is None:
                node.start()
        deadline = time.monotonic() + 30
        while any(n["connected"] is False or "fail" in n["flags"] for n in self._nodes_view()):
            if time.monotonic() > deadline:
                raise RuntimeError("a revived node did not rejoin the cluster")
            time.sleep(0.1)
        self.wait_ok()


def _node_line(line: str) -> dict:
    """One line of CLUSTER NODES: id address flags master ping pong epoch link slots..."""
    fields = line.split()
    return {"id": fields[0], "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
            "flags": fields[2].split(","), "master": fields[3], "connected": fields[7] == "connected",
            "slots": fields[8:]}


def _slots(client: redis.Redis) -> list[tuple[int, int, int]]:
    """(first slot, last slot, master port) of every range, read raw (CLUSTER SLOTS)."""
    raw = client.execute_command("CLUSTER SLOTS")
    if isinstance(raw, dict):  # redis-py parses it into {(start, end): {"primary": (host, port)...}}
        return [(start, end, int(info["primary"][1])) for (start, end), info in raw.items()]
    return [(int(start), int(end), int(master[1])) for start, end, master, *_ in raw]
