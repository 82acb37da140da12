"""A real Redis Cluster for tests and benchmarks: N ``redis-server`` masters on loopback.

Each node is a :class:`~tests.support.redisproc.RedisProcess` started with
``--cluster-enabled yes`` in its own temporary directory (its ``nodes.conf`` lives
there, so a restart on the same port rejoins with its slots), on a port P where the
cluster bus port P+10000 is free too. ``redis-cli --cluster create`` assigns the
16384 slots; every wait is bounded; every process is stopped by its own PID.

``--cluster-require-full-coverage no``: while one shard is down the others keep
serving, which is what a test of "a shard restarts, other shards never stop" needs.
Nothing is persisted (no RDB, no AOF): a node that restarts keeps its slots (from
``nodes.conf``) but comes back without data.

Example::

    cluster = RedisClusterProcess(redis_server_path(), hosts=("127.0.0.1", "127.0.0.2"))
    cluster.start()
    try:
        slot = key_slot(b"p{t}")
        src = cluster.owner(slot)
        cluster.command(src, "SET", "p{t}", "v")
        cluster.migrate_slot(slot, cluster.nodes[1])
        ...
    finally:
        cluster.cleanup()
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeAlias, TypeVar

from redis.crc import key_slot as _redis_key_slot

from .procs import HOST, log_tail
from .redisproc import RedisProcess

__all__ = [
    "SLOTS",
    "ClusterNode",
    "ErrorReply",
    "NodeView",
    "RawConnection",
    "RedisClusterProcess",
    "Reply",
    "key_slot",
    "read_reply",
    "redis_cli_path",
]

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Milliseconds without an answer before a node counts as failing (short: tests wait on it).
NODE_TIMEOUT_MS = 1000
#: Seconds any wait of this module lasts at most.
WAIT_TIMEOUT = 20.0
#: The cluster bus listens on the client port plus this.
BUS_OFFSET = 10000
#: Keys per ``MIGRATE`` while resharding (``redis-cli --cluster reshard --cluster-pipeline``).
MIGRATE_BATCH = 10
#: Milliseconds ``MIGRATE`` may take per batch.
MIGRATE_TIMEOUT_MS = 5000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A RESP error reply (``-MOVED 1234 127.0.0.2:7001``), returned rather than raised so
    a test can assert on it."""

    message: str

    @property
    def kind(self) -> str:
        """Its first word: ``MOVED``, ``ASK``, ``TRYAGAIN``, ``CROSSSLOT``, ``ERR`` ..."""
        return self.message.split(" ", 1)[0]

    def __str__(self) -> str:
        return self.message


#: A parsed RESP2 reply: simple strings and bulk strings as ``bytes``.
Reply: TypeAlias = "bytes | int | ErrorReply | list[Reply] | None"


def read_reply(stream: IO[bytes]) -> Reply:
    """Read one RESP2 reply from a binary file-like ``stream`` (``sock.makefile("rb")``).

    Raises:
        ConnectionError: the stream ended in the middle of a reply.
        ValueError: the bytes are not RESP.
    """
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection closed in the middle of a reply: {line!r}")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"-":
        return ErrorReply(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("connection closed in the middle of a bulk string")
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise ValueError(f"not a RESP2 reply: {line!r}")


def encode_command(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return f"*{len(parts)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def key_slot(key: bytes | str) -> int:
    """The hash slot of ``key`` (its ``{hash tag}`` if it has one), as Redis computes it."""
    return int(_redis_key_slot(key.encode() if isinstance(key, str) else key))


def redis_cli_path() -> str | None:
    """The ``redis-cli`` executable (Debian package ``redis-tools``), or ``None``."""
    return shutil.which("redis-cli") or (
        "/usr/bin/redis-cli" if Path("/usr/bin/redis-cli").exists() else None
    )


def host_binds(host: str) -> bool:
    """Whether this machine lets a socket bind ``host`` (Linux routes all of 127/8)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def cluster_port(host: str, taken: Iterable[int] = ()) -> int:
    """A port P free on ``host`` with P+10000 (the cluster bus) free too, neither in ``taken``.

    Raises:
        RuntimeError: none found in 200 tries.
    """
    avoid = set(taken)
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 65535 - BUS_OFFSET)
        if {port, port + BUS_OFFSET} & avoid:
            continue
        if _bindable(host, port) and _bindable(host, port + BUS_OFFSET):
            return port
    raise RuntimeError(f"no port P with P and P+{BUS_OFFSET} free on {host} in 200 tries")


class RawConnection:
    """One plain RESP2 connection to a node, for what :meth:`RedisClusterProcess.command`
    cannot do: stay ``SSUBSCRIBE``d and read pushes, or send ``ASKING`` first.

    Example::

        with cluster.connect(node) as conn:
            conn.send("SSUBSCRIBE", "p{t}")
            assert conn.read() == [b"ssubscribe", b"p{t}", 1]
    """

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._stream = self.sock.makefile("rb")

    def send(self, *args: str | bytes | int) -> None:
        """Send one command without waiting for its reply."""
        self.sock.sendall(encode_command(*args))

    def read(self, timeout: float = 5.0) -> Reply:
        """The next reply or push.

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds.
        """
        self.sock.settimeout(timeout)
        return read_reply(self._stream)

    def request(self, *args: str | bytes | int) -> Reply:
        """Send one command and return its reply."""
        self.send(*args)
        return self.read()

    def close(self) -> None:
        self._stream.close()
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One master of the cluster: where it listens, its process, and its cluster node id."""

    host: str
    port: int
    process: RedisProcess
    node_id: str

    @property
    def address(self) -> str:
        """``host:port``, as ``MOVED`` / ``ASK`` name it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.address} ({self.node_id[:8]})"


@dataclass(frozen=True, slots=True)
class NodeView:
    """One line of ``CLUSTER NODES``: a node as one of its peers (or itself) sees it."""

    node_id: str
    address: str
    flags: frozenset[str]
    link: str
    slots: frozenset[int]

    @classmethod
    def parse(cls, line: str) -> NodeView:
        """``<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot>...``"""
        fields = line.split()
        slots: set[int] = set()
        for spec in fields[8:]:
            if spec.startswith("["):  # [slot->-id] / [slot-<-id]: a migration marker
                continue
            low, _, high = spec.partition("-")
            slots.update(range(int(low), int(high or low) + 1))
        return cls(
            node_id=fields[0],
            address=fields[1].split("@", 1)[0],
            flags=frozenset(fields[2].split(",")),
            link=fields[7],
            slots=frozenset(slots),
        )


@dataclass(frozen=True, slots=True)
class _Migration:
    slot: int
    src: ClusterNode
    dst: ClusterNode


class RedisClusterProcess:
    """A Redis Cluster of ``masters`` nodes this suite started (no replicas).

    ``hosts`` gives each node's loopback address in turn (cycled when shorter than
    ``masters``), so ``hosts=("127.0.0.1", "127.0.0.2", "127.0.0.3")`` puts every
    master on its own "host".
    """

    def __init__(
        self,
        executable: str,
        *,
        masters: int = 3,
        hosts: Sequence[str] = (HOST,),
        redis_cli: str | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        timeout: float = WAIT_TIMEOUT,
    ) -> None:
        if masters < 1:
            raise ValueError(f"masters must be at least 1, got {masters}")
        if not hosts:
            raise ValueError("hosts must name at least one loopback address, got ()")
        for host in hosts:
            if not host.startswith("127."):
                raise ValueError(f"hosts must be loopback (127.0.0.0/8), got {host!r}")
        self.executable = executable
        self.redis_cli = redis_cli or redis_cli_path()
        self.masters = masters
        self.hosts = tuple(hosts)
        self.node_timeout_ms = node_timeout_ms
        self.timeout = timeout
        self.nodes: list[ClusterNode] = []
        self._processes: list[RedisProcess] = []
        self._migrations: dict[int, _Migration] = {}
        self._ports: set[int] = set()
        self._cli_log = Path(tempfile.mkdtemp(prefix="spry-cluster-")) / "redis-cli.log"

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis+cluster://host:port`` of the first node (a startup node)."""
        first = self.nodes[0]
        return f"redis+cluster://{first.host}:{first.port}"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, e.g. for ``redis.cluster.ClusterNode``."""
        return [(n.host, n.port) for n in self.nodes]

    def node_at(self, address: str) -> ClusterNode:
        """The node listening on ``host:port`` (as named by ``MOVED`` / ``ASK``).

        Raises:
            KeyError: no node of this cluster listens there.
        """
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(f"no node of this cluster at {address}; nodes: {self.startup_nodes}")

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the masters, ``redis-cli --cluster create`` them, wait until stable.

        Raises:
            RuntimeError: a node did not start, ``redis-cli`` failed, or the cluster
                was not ``cluster_state:ok`` with one slot map on every node in time
                (everything started is stopped first).
        """
        assert not self.nodes, "already started"
        if self.redis_cli is None:
            raise RuntimeError("redis-cli not found: apt-get install -y redis-tools")
        try:
            for i in range(self.masters):
                self.nodes.append(self._start_node(self.hosts[i % len(self.hosts)]))
            self._run_cli(
                "--cluster",
                "create",
                *(n.address for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            )
            self.wait_stable()
        except BaseException:
            self.cleanup()
            raise

    def _start_node(self, host: str) -> ClusterNode:
        port = cluster_port(host, self._ports)
        self._ports.update({port, port + BUS_OFFSET})
        process = RedisProcess(
            self.executable,
            port,
            host=host,
            extra_args=(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--cluster-require-full-coverage",
                "no",
                # Without these a node on 127.0.0.2 reaches its peers from 127.0.0.1 (the
                # kernel's choice) and they record it at the wrong address: the
                # handshake never completes.
                "--cluster-announce-ip",
                host,
                "--bind-source-addr",
                host,
            ),
        )
        self._processes.append(process)
        process.start()
        node_id = self._call_on(host, port, "CLUSTER", "MYID")
        assert isinstance(node_id, bytes), node_id
        return ClusterNode(host, port, process, node_id.decode())

    def _run_cli(self, *args: str) -> str:
        assert self.redis_cli is not None
        with self._cli_log.open("ab") as log:
            log.write(f"$ redis-cli {' '.join(args)}\n".encode())
        try:
            done = subprocess.run(
                [self.redis_cli, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"redis-cli {' '.join(args)} took over {self.timeout} s") from exc
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        with self._cli_log.open("ab") as log:
            log.write(out.encode())
        if done.returncode != 0 or "[ERR]" in out:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed ({done.returncode}):\n{out}")
        return out

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL ``node`` by PID, like a crash (its peers mark it failing after the
        node timeout; the other shards keep serving)."""
        node.process.kill()

    def stop(self, node: ClusterNode) -> None:
        """SIGTERM ``node`` by PID (SIGKILL after 10 s)."""
        node.process.stop()

    def restart(self, node: ClusterNode) -> None:
        """Start a stopped or killed ``node`` again on its port and directory: it reads
        its ``nodes.conf``, rejoins with its slots (without data), and this waits until
        every node sees it healthy.

        Raises:
            RuntimeError: it did not start, or the cluster was not stable in time.
        """
        if node.process.running():
            node.process.stop()
        node.process.start()
        self.wait_stable()

    def cleanup(self) -> None:
        """Stop every node this started (by PID) and remove their directories."""
        for process in self._processes:
            process.cleanup()
        self._processes.clear()
        self.nodes.clear()
        self._migrations.clear()
        shutil.rmtree(self._cli_log.parent, ignore_errors=True)

    def pids(self) -> list[int]:
        """The PIDs of every process this started (current runs, alive or not)."""
        return [p.pid for p in self._processes if p.pid is not None]

    def log(self, node: ClusterNode) -> str:
        """Everything ``node`` logged (all its runs)."""
        return node.process.log()

    # -- commands ----------------------------------------------------------------------

    def command(self, node: ClusterNode, *args: str | bytes | int) -> Reply:
        """Send one command to ``node`` and return its parsed reply; an error reply
        (``MOVED``, ``ASK`` ...) comes back as :class:`ErrorReply`, not raised."""
        return self._call_on(node.host, node.port, *args)

    def call(self, node: ClusterNode, *args: str | bytes | int) -> Reply:
        """Like :meth:`command`, but an error reply raises.

        Raises:
            RuntimeError: ``node`` answered an error (its message and the command).
        """
        reply = self.command(node, *args)
        if isinstance(reply, ErrorReply):
            raise RuntimeError(f"{node} answered {reply.message!r} to {args!r}")
        return reply

    def _call_on(self, host: str, port: int, *args: str | bytes | int) -> Reply:
        with RawConnection(host, port) as conn:
            return conn.request(*args)

    def connect(self, node: ClusterNode) -> RawConnection:
        """A connection of its own to ``node`` (the caller closes it)."""
        return RawConnection(node.host, node.port)

    def cluster_info(self, node: ClusterNode) -> dict[str, str]:
        """``CLUSTER INFO`` of ``node`` as a dict (``cluster_state`` -> ``ok``)."""
        raw = self.call(node, "CLUSTER", "INFO")
        assert isinstance(raw, bytes), raw
        return dict(line.split(":", 1) for line in raw.decode().splitlines() if ":" in line)

    def cluster_nodes(self, node: ClusterNode) -> list[NodeView]:
        """``CLUSTER NODES`` of ``node``: every node it knows, as it sees them."""
        raw = self.call(node, "CLUSTER", "NODES")
        assert isinstance(raw, bytes), raw
        return [NodeView.parse(line) for line in raw.decode().splitlines() if line.strip()]

    def slot_map(self, node: ClusterNode) -> dict[int, str]:
        """Slot -> owner node id, as ``node`` sees it."""
        return {slot: view.node_id for view in self.cluster_nodes(node) for slot in view.slots}

    def owner(self, slot: int, *, according_to: ClusterNode | None = None) -> ClusterNode:
        """The node serving ``slot`` (as the first running node, or ``according_to``,
        sees it).

        Raises:
            KeyError: no node serves it.
        """
        viewer = according_to or self._running()[0]
        owner_id = self.slot_map(viewer).get(slot)
        for node in self.nodes:
            if node.node_id == owner_id:
                return node
        raise KeyError(f"slot {slot} is served by no node (according to {viewer})")

    def shard_numsub(self, channel: str | bytes) -> int:
        """Connections ``SSUBSCRIBE``d to ``channel`` on the node owning its slot
        (``PUBSUB SHARDNUMSUB``)."""
        node = self.owner(key_slot(channel))
        reply = self.call(node, "PUBSUB", "SHARDNUMSUB", channel)
        assert isinstance(reply, list) and isinstance(reply[1], int), reply
        return reply[1]

    def shard_channels(self, node: ClusterNode, pattern: str = "*") -> list[bytes]:
        """The shard channels with subscribers on ``node`` (``PUBSUB SHARDCHANNELS``)."""
        reply = self.call(node, "PUBSUB", "SHARDCHANNELS", pattern)
        assert isinstance(reply, list), reply
        return sorted(c for c in reply if isinstance(c, bytes))

    # -- waiting -----------------------------------------------------------------------

    def _running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process.running()]

    def _wait(
        self,
        condition: Callable[[], T | None],
        what: Callable[[], str],
        timeout: float | None,
    ) -> T:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last = ""
        while True:
            try:
                result = condition()
            except (OSError, AssertionError, RuntimeError) as exc:
                result, last = None, f"{type(exc).__name__}: {exc}"
            if result:
                return result
            if time.monotonic() >= deadline:
                logs = "\n".join(
                    f"--- {n}:\n{log_tail(n.process.log_path, 1500)}" for n in self.nodes
                )
                raise RuntimeError(f"cluster not {what()} within the timeout ({last})\n{logs}")
            time.sleep(0.05)

    def stable_problems(self) -> list[str]:
        """Why the running nodes are not (yet) a healthy cluster; ``[]`` when they are:
        each says ``cluster_state:ok``, sees every other running node connected and not
        failing, and all agree on the slot map."""
        running = self._running()
        problems: list[str] = []
        maps: dict[str, dict[int, str]] = {}
        running_ids = {n.node_id for n in running}
        for node in running:
            state = self.cluster_info(node).get("cluster_state")
            if state != "ok":
                problems.append(f"{node}: cluster_state:{state}")
            views = self.cluster_nodes(node)
            for view in views:
                unhealthy = view.flags & {"fail", "fail?", "handshake", "noaddr"}
                peer = view.node_id in running_ids and "myself" not in view.flags
                if peer and (unhealthy or view.link != "connected"):
                    problems.append(
                        f"{node} sees {view.address} as {sorted(view.flags)}, {view.link}"
                    )
            missing = running_ids - {view.node_id for view in views}
            if missing:
                problems.append(f"{node} does not know {sorted(missing)}")
            maps[node.node_id] = self.slot_map(node)
        if len({tuple(sorted(m.items())) for m in maps.values()}) > 1:
            problems.append("the nodes disagree on the slot map")
        return problems

    def wait_stable(self, timeout: float | None = None) -> None:
        """Wait (bounded) until :meth:`stable_problems` is empty.

        Raises:
            RuntimeError: still unstable after ``timeout`` (default :attr:`timeout`)
                seconds; the message says why and carries the nodes' log tails.
        """
        last: list[str] = []

        def stable() -> bool:
            nonlocal last
            last = self.stable_problems()
            return not last

        self._wait(stable, lambda: f"stable ({'; '.join(last) or 'see the logs'})", timeout)

    def wait_owner(self, slot: int, node: ClusterNode, timeout: float | None = None) -> None:
        """Wait until every running node says ``node`` serves ``slot``."""
        self._wait(
            lambda: all(self.slot_map(n).get(slot) == node.node_id for n in self._running()),
            lambda: f"agreeing that {node} serves slot {slot}",
            timeout,
        )

    # -- resharding --------------------------------------------------------------------

    def begin_migration(
        self, slot: int, dst: ClusterNode, keys: Iterable[bytes | str] = ()
    ) -> None:
        """Put ``slot`` in the middle of a move to ``dst``: ``IMPORTING`` on ``dst``,
        ``MIGRATING`` on its owner, then move only ``keys`` (if any). Until
        :meth:`finish_migration`, the owner answers ``ASK`` for keys it no longer has.

        Raises:
            ValueError: ``dst`` already serves ``slot``, or it is already migrating.
        """
        if slot in self._migrations:
            raise ValueError(f"slot {slot} is already migrating; finish_migration({slot}) first")
        src = self.owner(slot)
        if src == dst:
            raise ValueError(f"{dst} already serves slot {slot}: nothing to migrate")
        # The order redis-cli uses: importing first, so a client sent on by ASK finds it.
        self.call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        self.call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
        self._migrations[slot] = _Migration(slot, src, dst)
        self.migrate_keys(slot, keys)

    def migrate_keys(self, slot: int, keys: Iterable[bytes | str]) -> int:
        """``MIGRATE`` ``keys`` of a migrating ``slot`` from its source to its
        destination; return how many moved."""
        migration = self._migrations[slot]
        batch = [k.encode() if isinstance(k, str) else k for k in keys]
        for i in range(0, len(batch), MIGRATE_BATCH):
            self._migrate(migration, batch[i : i + MIGRATE_BATCH])
        return len(batch)

    def _migrate(self, migration: _Migration, keys: list[bytes]) -> None:
        if not keys:
            return
        dst = migration.dst
        reply = self.command(
            migration.src, "MIGRATE", dst.host, dst.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys
        )
        if isinstance(reply, ErrorReply) and reply.kind != "NOKEY":
            raise RuntimeError(f"MIGRATE of {len(keys)} keys to {dst} failed: {reply}")

    def finish_migration(self, slot: int) -> None:
        """Move the keys left in ``slot`` (``CLUSTER GETKEYSINSLOT`` + ``MIGRATE`` in
        batches), then ``SETSLOT NODE dst`` on the destination, the source and every
        other node; wait until all agree."""
        migration = self._migrations[slot]
        while True:
            keys = self.call(migration.src, "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH)
            assert isinstance(keys, list), keys
            if not keys:
                break
            self._migrate(migration, [k for k in keys if isinstance(k, bytes)])
        dst_id = migration.dst.node_id
        others = [n for n in self._running() if n not in (migration.src, migration.dst)]
        for node in (migration.dst, migration.src, *others):
            self.call(node, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        del self._migrations[slot]
        self.wait_owner(slot, migration.dst)

    def migrate_slot(self, slot: int, dst: ClusterNode) -> None:
        """Reshard one ``slot`` with all its keys to ``dst``, as ``redis-cli --cluster
        reshard`` does (:meth:`begin_migration` then :meth:`finish_migration`)."""
        self.begin_migration(slot, dst)
        self.finish_migration(slot)

    def add_master(self, host: str = HOST, slots: Iterable[int] = ()) -> ClusterNode:
        """Start one more master on ``host``, ``CLUSTER MEET`` it, wait until every node
        knows it, then move ``slots`` (with their keys) to it: a topology change.

        Raises:
            RuntimeError: it did not start or join in time.
        """
        node = self._start_node(host)
        self.nodes.append(node)
        first = next(n for n in self._running() if n != node)
        self.call(first, "CLUSTER", "MEET", node.host, node.port)
        self.wait_stable()
        for slot in slots:
            self.migrate_slot(slot, node)
        return node
