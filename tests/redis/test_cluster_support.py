"""The Redis Cluster test support (``tests/support/clusterproc.py``) and the cluster facts
the cluster broker is designed on, checked against real ``redis-server`` processes.

Most tests share one module-scoped cluster (a start costs ~2 s: ``redis-cli --cluster
create`` polls once a second); each uses its own hash tag, and looks owners up rather
than assuming them. Tests that change the topology get their own ``redis_cluster``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.clusterproc import (
    SLOTS,
    ClusterNode,
    ErrorReply,
    RedisClusterProcess,
    host_binds,
    key_slot,
)

from .conftest import CLUSTER_HOSTS, cluster_hosts, new_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcess]:
    """One 3-master cluster for the tests of this module that keep it 3 masters."""
    shared = new_cluster()
    shared.start()
    try:
        yield shared
    finally:
        shared.cleanup()


def other_node(cluster: RedisClusterProcess, node: ClusterNode) -> ClusterNode:
    return next(n for n in cluster.nodes if n != node)


def channel_on(cluster: RedisClusterProcess, node: ClusterNode, *, not_slot: int) -> str:
    """A channel name whose slot ``node`` serves, other than ``not_slot``."""
    for i in range(10_000):
        name = f"c{i}"
        slot = key_slot(name)
        if slot != not_slot and cluster.owner(slot) == node:
            return name
    raise AssertionError(f"no channel found on {node}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_serves_all_16384_slots_with_three_masters_on_distinct_hosts(
    cluster: RedisClusterProcess,
) -> None:
    assert len(cluster.nodes) == 3
    if host_binds(CLUSTER_HOSTS[1]):
        assert cluster_hosts() == CLUSTER_HOSTS
        assert sorted(n.host for n in cluster.nodes) == list(CLUSTER_HOSTS)
    first = cluster.nodes[0]
    assert cluster.url == f"redis+cluster://{first.host}:{first.port}"
    assert cluster.startup_nodes == [(n.host, n.port) for n in cluster.nodes]
    maps = [cluster.slot_map(n) for n in cluster.nodes]
    assert all(m == maps[0] for m in maps)
    assert sorted(maps[0]) == list(range(SLOTS))
    assert set(maps[0].values()) == {n.node_id for n in cluster.nodes}
    for node in cluster.nodes:
        info = cluster.cluster_info(node)
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "3"
        assert info["cluster_slots_assigned"] == str(SLOTS)


def test_command_on_a_non_owner_answers_moved_to_the_owner(cluster: RedisClusterProcess) -> None:
    slot = key_slot(b"k{moved}")
    owner = cluster.owner(slot)
    assert cluster.call(owner, "SET", "k{moved}", "v") == b"OK"
    reply = cluster.command(other_node(cluster, owner), "GET", "k{moved}")
    assert reply == ErrorReply(f"MOVED {slot} {owner.address}")
    assert cluster.node_at(owner.address) == owner


def test_migrate_slot_moves_the_keys_and_every_node_agrees_on_the_new_owner(
    cluster: RedisClusterProcess,
) -> None:
    slot = key_slot(b"k{mig}")
    src = cluster.owner(slot)
    dst = other_node(cluster, src)
    for i in range(25):  # more than one MIGRATE batch
        cluster.call(src, "SET", f"k{{mig}}:{i}", str(i))

    cluster.migrate_slot(slot, dst)

    assert all(cluster.owner(slot, according_to=n) == dst for n in cluster.nodes)
    assert cluster.call(dst, "GET", "k{mig}:24") == b"24"
    assert cluster.call(dst, "CLUSTER", "COUNTKEYSINSLOT", slot) == 25
    assert cluster.call(src, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    assert cluster.command(src, "GET", "k{mig}:0") == ErrorReply(f"MOVED {slot} {dst.address}")
    assert cluster.stable_problems() == []


def test_begin_migration_answers_ask_for_moved_keys_and_serves_the_others(
    cluster: RedisClusterProcess,
) -> None:
    slot = key_slot(b"k{ask}")
    src = cluster.owner(slot)
    dst = other_node(cluster, src)
    cluster.call(src, "SET", "k{ask}:moved", "m")
    cluster.call(src, "SET", "k{ask}:kept", "k")

    cluster.begin_migration(slot, dst, keys=["k{ask}:moved"])
    try:
        assert cluster.command(src, "GET", "k{ask}:moved") == ErrorReply(
            f"ASK {slot} {dst.address}"
        )
        assert cluster.command(src, "GET", "k{ask}:kept") == b"k"
        # Both keys in one command while they are split: TRYAGAIN.
        split = cluster.command(src, "MGET", "k{ask}:moved", "k{ask}:kept")
        assert isinstance(split, ErrorReply) and split.kind == "TRYAGAIN"
        # dst serves the slot only after ASKING.
        assert cluster.command(dst, "GET", "k{ask}:moved") == ErrorReply(
            f"MOVED {slot} {src.address}"
        )
        with cluster.connect(dst) as conn:
            assert conn.request("ASKING") == b"OK"
            assert conn.request("GET", "k{ask}:moved") == b"m"
        with pytest.raises(ValueError, match="already migrating"):
            cluster.begin_migration(slot, dst)
    finally:
        cluster.finish_migration(slot)
    assert cluster.owner(slot) == dst
    assert cluster.call(dst, "MGET", "k{ask}:moved", "k{ask}:kept") == [b"m", b"k"]


def test_restart_after_a_kill_keeps_the_slots_and_the_node_rejoins_empty(
    cluster: RedisClusterProcess,
) -> None:
    slot = key_slot(b"k{crash}")
    victim = cluster.owner(slot)
    survivor = other_node(cluster, victim)
    survivor_key = channel_on(cluster, survivor, not_slot=slot)
    cluster.call(victim, "SET", "k{crash}", "lost")
    old_pid = victim.process.pid

    cluster.kill(victim)
    assert not victim.process.running()
    # The other shards keep serving (--cluster-require-full-coverage no) and still
    # send the victim's slot to the victim (no replica, no failover).
    assert cluster.call(survivor, "SET", survivor_key, "v") == b"OK"
    assert cluster.cluster_info(survivor)["cluster_state"] == "ok"
    assert cluster.command(survivor, "GET", "k{crash}") == ErrorReply(
        f"MOVED {slot} {victim.address}"
    )

    cluster.restart(victim)

    assert victim.process.pid != old_pid
    assert cluster.call(victim, "CLUSTER", "MYID") == victim.node_id.encode()
    assert all(cluster.owner(slot, according_to=n) == victim for n in cluster.nodes)
    assert cluster.call(victim, "GET", "k{crash}") is None  # nothing persisted
    assert cluster.stable_problems() == []


def test_script_spublishes_to_its_own_slot_and_may_not_reach_another_node(
    cluster: RedisClusterProcess,
) -> None:
    """Fact (a): a script with KEYS ``p{t}:meta`` can SPUBLISH to ``p{t}``."""
    slot = key_slot(b"p{lua}")
    owner = cluster.owner(slot)
    script = "return redis.call('SPUBLISH', ARGV[1], 'x')"
    with cluster.connect(owner) as sub:
        assert sub.request("SSUBSCRIBE", "p{lua}") == [b"ssubscribe", b"p{lua}", 1]
        assert cluster.call(owner, "EVAL", script, 1, "p{lua}:meta", "p{lua}") == 1
        assert sub.read() == [b"smessage", b"p{lua}", b"x"]
    far = channel_on(cluster, other_node(cluster, owner), not_slot=slot)
    reply = cluster.command(owner, "EVAL", script, 1, "p{lua}:meta", far)
    assert isinstance(reply, ErrorReply)
    assert "Script attempted to access a non local key in a cluster node" in reply.message
    # Surprise: a channel of ANOTHER slot on the SAME node is not refused.
    near = channel_on(cluster, owner, not_slot=slot)
    with cluster.connect(owner) as sub:
        assert sub.request("SSUBSCRIBE", near) == [b"ssubscribe", near.encode(), 1]
        assert cluster.call(owner, "EVAL", script, 1, "p{lua}:meta", near) == 1
        assert sub.read() == [b"smessage", near.encode(), b"x"]


def test_ssubscribe_on_a_non_owner_answers_moved_and_two_slots_crossslot(
    cluster: RedisClusterProcess,
) -> None:
    """Fact (c)."""
    slot = key_slot(b"p{sub}")
    owner = cluster.owner(slot)
    with cluster.connect(other_node(cluster, owner)) as sub:
        assert sub.request("SSUBSCRIBE", "p{sub}") == ErrorReply(f"MOVED {slot} {owner.address}")
    near = channel_on(cluster, owner, not_slot=slot)
    with cluster.connect(owner) as sub:
        reply = sub.request("SSUBSCRIBE", "p{sub}", near)
        assert isinstance(reply, ErrorReply) and reply.kind == "CROSSSLOT"
        assert cluster.shard_numsub("p{sub}") == 0


def test_finished_migration_sunsubscribes_the_old_owners_shard_subscribers(
    cluster: RedisClusterProcess,
) -> None:
    """Fact (b), and fact (d): during a migration SPUBLISH and SSUBSCRIBE stay on src."""
    slot = key_slot(b"p{move}")
    src = cluster.owner(slot)
    dst = other_node(cluster, src)
    cluster.call(src, "SET", "p{move}:meta", "1")
    cluster.call(src, "SET", "p{move}:stream", "1")
    with cluster.connect(src) as sub:
        assert sub.request("SSUBSCRIBE", "p{move}") == [b"ssubscribe", b"p{move}", 1]
        assert cluster.shard_numsub("p{move}") == 1
        assert cluster.shard_channels(src, "p{move*") == [b"p{move}"]

        cluster.begin_migration(slot, dst, keys=["p{move}:stream"])
        # (d) src (MIGRATING) runs SPUBLISH itself, no ASK; its subscribers get it.
        assert cluster.call(src, "SPUBLISH", "p{move}", "during") == 1
        assert sub.read() == [b"smessage", b"p{move}", b"during"]
        with cluster.connect(src) as late:
            assert late.request("SSUBSCRIBE", "p{move}") == [b"ssubscribe", b"p{move}", 1]
        # dst (IMPORTING) sends SPUBLISH and SSUBSCRIBE back to src; after ASKING it
        # runs SPUBLISH, reaching nobody: the subscribers are on src.
        assert cluster.command(dst, "SPUBLISH", "p{move}", "x") == ErrorReply(
            f"MOVED {slot} {src.address}"
        )
        with cluster.connect(dst) as conn:
            assert conn.request("SSUBSCRIBE", "p{move}") == ErrorReply(
                f"MOVED {slot} {src.address}"
            )
        with cluster.connect(dst) as conn:
            assert conn.request("ASKING") == b"OK"
            assert conn.request("SPUBLISH", "p{move}", "lost") == 0
        # A script whose key already moved is sent on with ASK; on dst after ASKING it
        # runs, and its SPUBLISH reaches nobody either.
        script = "return redis.call('SPUBLISH', 'p{move}', ARGV[1])"
        assert cluster.command(src, "EVAL", script, 1, "p{move}:meta", "kept") == 1
        assert sub.read() == [b"smessage", b"p{move}", b"kept"]
        assert cluster.command(src, "EVAL", script, 1, "p{move}:stream", "y") == ErrorReply(
            f"ASK {slot} {dst.address}"
        )
        with cluster.connect(dst) as conn:
            assert conn.request("ASKING") == b"OK"
            assert conn.request("EVAL", script, 1, "p{move}:stream", "lost") == 0

        cluster.finish_migration(slot)

        # (b) the old owner tells its shard subscribers the channel is gone.
        assert sub.read() == [b"sunsubscribe", b"p{move}", 0]
    assert cluster.shard_channels(src, "p{move*") == []
    assert cluster.shard_numsub("p{move}") == 0  # on dst, the new owner


def test_add_master_receives_slots_and_cleanup_stops_every_process(
    redis_cluster: RedisClusterProcess,
) -> None:
    slot = key_slot(b"k{grow}")
    redis_cluster.call(redis_cluster.owner(slot), "SET", "k{grow}", "v")
    host = "127.0.0.4" if host_binds("127.0.0.4") else cluster_hosts()[0]

    added = redis_cluster.add_master(host, slots=[slot, 0])

    assert added.host == host
    assert len(redis_cluster.nodes) == 4
    for node in redis_cluster.nodes:
        assert redis_cluster.cluster_info(node)["cluster_known_nodes"] == "4"
        assert redis_cluster.owner(slot, according_to=node) == added
        assert redis_cluster.owner(0, according_to=node) == added
    assert redis_cluster.call(added, "GET", "k{grow}") == b"v"

    pids = redis_cluster.pids()
    dirs = [n.process.dir for n in redis_cluster.nodes]
    assert len(pids) == 4 and all(alive(p) for p in pids)
    redis_cluster.cleanup()
    assert not any(alive(p) for p in pids)
    assert not any(d.exists() for d in dirs)
    assert redis_cluster.nodes == [] and redis_cluster.pids() == []
