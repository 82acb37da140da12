"""Topic history on one process (the memory broker): positions, recovery, hold, presence."""

from __future__ import annotations

import asyncio
import doctest
import json
import logging
from typing import Any
from unittest import mock

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import (
    Event,
    MemoryBroker,
    Position,
    PresenceEvent,
    Spry,
    TextDataReceived,
    WebSocket,
    parse_position,
)
from aiohttp_spry.pubsub import FANOUT_KEY, envelope, history, positions, recovery
from aiohttp_spry.pubsub.broker import Listener
from aiohttp_spry.pubsub.envelope import Kind, Stored, store
from aiohttp_spry.pubsub.history import HistoryPolicy, HistoryRead, HistoryRules, MemoryHistory
from aiohttp_spry.pubsub.recovery import TopicLog, Verdict

from .conftest import ClientFactory
from .support.polling import eventually
from .support.rawws import RawWebSocket
from .support.wire import CLOSE

Client = TestClient[web.Request, web.Application]
TIMEOUT = 5.0


def history_app(spry: Spry | None = None, *, size: int = 200, ttl: float = 600) -> Spry:
    """``/t/{topic}?since=E:O&presence=NAME&events=1``: subscribes (with hold), sends
    ``{"joined": result…}``, resumes; text ``T`` from a member is published to the topic
    with ``ack=True`` and answered with ``{"ack": offset}``; ``bytes:`` publishes bytes."""
    spry = spry or Spry()
    spry.history("h:", size=size, ttl=ttl)

    @spry.route("/t/{topic}")
    def join(event: Event) -> web.StreamResponse:
        topic = event.params["topic"]
        since = event.query.get("since")
        name = event.query.get("presence")
        events = event.query.get("events") == "1"

        async def session(ws: WebSocket) -> None:
            result = await ws.subscribe(
                topic,
                since=since,
                hold=True,
                presence={"name": name} if name is not None else None,
                presence_events=events,
            )
            assert result.position is not None
            await ws.send_json(
                {
                    "joined": str(result.position),
                    "recovered": result.recovered,
                    "replayed": result.replayed,
                    "id": ws.id,
                }
            )
            ws.resume(topic)
            async for message in ws.events:
                if isinstance(message, TextDataReceived):
                    if message.text == "bytes:":
                        try:
                            await ws.publish(topic, b"\x00")
                        except TypeError as error:
                            await ws.send_json({"error": str(error)})
                        continue
                    position = await ws.publish(topic, {"text": message.text}, ack=True)
                    await ws.send_json({"ack": str(position)})

        return event.ws.upgrade(session)

    return spry


async def connect(client: Client, topic: str, **query: str) -> tuple[Any, dict[str, Any]]:
    ws = await client.ws_connect(f"/t/{topic}", params=query)
    first = await ws.receive_json(timeout=TIMEOUT)
    assert "joined" in first, first
    return ws, first


async def receive_all(ws: Any, count: int) -> list[dict[str, Any]]:
    return [await ws.receive_json(timeout=TIMEOUT) for _ in range(count)]


async def nothing_more(ws: Any) -> None:
    """Nothing else arrives: a ping is answered and no frame came before the pong."""
    await ws.ping()
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.2)


# -- values ------------------------------------------------------------------------------


def test_the_new_modules_doctests_pass() -> None:
    for module in (positions, envelope, history, recovery):
        result = doctest.testmod(module)
        assert result.failed == 0, module


@pytest.mark.parametrize("bad", ["", "abc", "e:", ":5", "e:-1", "e:1.5", "e:x", "e:٣", "é:1"])
def test_a_malformed_position_is_a_value_error_naming_the_form(bad: str) -> None:
    with pytest.raises(ValueError, match="EPOCH:OFFSET"):
        parse_position(bad)


def test_positions_round_trip_as_epoch_colon_offset() -> None:
    position = Position("k3x9-_Q", 42)
    assert parse_position(str(position)) == position
    assert position.as_dict() == {"epoch": "k3x9-_Q", "offset": 42}


def test_the_envelope_adds_the_position_without_decoding_and_refuses_bytes() -> None:
    at = Position("e1", 3)
    for data in ({"a": [1, {"b": "}"}]}, {}, 'plain "text" }', [1, 2], None, 7):
        stored = store("h:x", data)
        framed = json.loads(envelope.envelope(stored.kind, stored.payload, at))
        if isinstance(data, dict):
            assert framed == {**data, "epoch": "e1", "offset": 3}
        else:
            assert framed == {"data": data, "epoch": "e1", "offset": 3}
    with pytest.raises(TypeError, match=r"keeps history.*not bytes"):
        store("h:x", b"\x00")


def test_history_rules_validate_and_the_longest_prefix_wins() -> None:
    for bad in ({"size": 0}, {"size": 1.5}, {"ttl": 0}, {"ttl": -1}, {"meta_ttl": 1}):
        settings: dict[str, Any] = {"size": 10, "ttl": 5, **bad}
        with pytest.raises(ValueError, match="history"):
            HistoryPolicy("p:", **settings)
    rules = HistoryRules([HistoryPolicy("a:", 1, 1), HistoryPolicy("a:b:", 2, 1)])
    assert rules.policy("a:b:c") == HistoryPolicy("a:b:", 2, 1)
    assert rules.policy("a:c") == HistoryPolicy("a:", 1, 1)
    assert rules.policy("b") is None
    with pytest.raises(ValueError, match="already declared"):
        rules.add(HistoryPolicy("a:", 5, 5))


async def test_history_cannot_be_declared_after_the_application_started(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    await serve(spry)
    with pytest.raises(RuntimeError, match="already started"):
        spry.history("late:", size=1, ttl=1)


def test_memory_history_forgets_messages_after_ttl_and_the_epoch_after_meta_ttl() -> None:
    now = [0.0]
    store_ = MemoryHistory(clock=lambda: now[0])
    policy = HistoryPolicy("t", size=3, ttl=10, meta_ttl=100)
    first = store_.append("t", Stored(Kind.TEXT, b"1"), "m-1", policy)
    assert first.offset == 1
    for n in (2, 3, 4):
        store_.append("t", Stored(Kind.TEXT, str(n).encode()), f"m-{n}", policy)
    read = store_.read("t", first, policy)  # the ring keeps 3: #2 was pushed out
    assert [e.offset for e in read.entries] == [2, 3, 4]
    assert read.recovers(first) and not read.recovers(Position(first.epoch, 0))
    now[0] = 11.0  # past ttl: the messages are gone, the position is kept
    read = store_.read("t", Position(first.epoch, 3), policy)
    assert read.position == Position(first.epoch, 4) and read.entries == ()
    assert not read.recovers(Position(first.epoch, 3))
    assert read.recovers(Position(first.epoch, 4))  # missed nothing: recovered
    now[0] = 200.0  # past meta_ttl: a new epoch
    read = store_.read("t", None, policy)
    assert read.position.epoch != first.epoch and read.position.offset == 0


def test_the_log_delivers_the_next_offset_drops_duplicates_and_reads_gaps() -> None:
    log = TopicLog("t", HistoryPolicy("t", size=10, ttl=1))
    assert log.accept(Position("e", 5)) is Verdict.DELIVER  # the first one sets the start
    log.record(Position("e", 5), b"f", b"t")
    assert log.accept(Position("e", 5)) is Verdict.DUPLICATE
    assert log.accept(Position("e", 4)) is Verdict.DUPLICATE
    assert log.accept(Position("e", 7)) is Verdict.GAP
    assert log.accept(Position("e", 6)) is Verdict.DELIVER
    # A new epoch from 1 while the link held: the history expired, nothing missed.
    assert log.accept(Position("f", 1)) is Verdict.DELIVER
    assert log.accept(Position("f", 2)) is Verdict.GAP
    log.suspect = True  # after a broken link, the same could hide a gap
    assert log.accept(Position("f", 1)) is Verdict.GAP


# -- positions, ack, replay ------------------------------------------------------------


async def test_each_message_gets_the_next_offset_and_the_sender_learns_its_own(
    serve: ClientFactory,
) -> None:
    client = await serve(history_app())
    a, a_first = await connect(client, "h:one")
    b, b_first = await connect(client, "h:one")
    epoch, offset = a_first["joined"].split(":")
    assert offset == "0" and b_first["joined"] == a_first["joined"]
    assert a_first["recovered"] is None
    for n in range(1, 4):
        await a.send_str(f"m{n}")
        assert await a.receive_json(timeout=TIMEOUT) == {"ack": f"{epoch}:{n}"}
        expected = {"text": f"m{n}", "epoch": epoch, "offset": n}
        assert await b.receive_json(timeout=TIMEOUT) == expected
    spry = client.app[FANOUT_KEY]
    assert await spry.publish_positioned("h:one", "from the app") == Position(epoch, 4)
    for ws in (a, b):
        assert await ws.receive_json(timeout=TIMEOUT) == {
            "data": "from the app",
            "epoch": epoch,
            "offset": 4,
        }
    await nothing_more(a)  # the sender never got its own messages
    for ws in (a, b):
        await ws.close()


async def test_subscribe_since_replays_exactly_the_missed_messages_then_live(
    serve: ClientFactory,
) -> None:
    spry = history_app()
    client = await serve(spry)
    member, _ = await connect(client, "h:room")
    other, _ = await connect(client, "h:room")
    await other.send_str("before")
    seen = await member.receive_json(timeout=TIMEOUT)
    last = Position(seen["epoch"], seen["offset"])
    await member.close()
    for n in range(50):
        await spry.publish(client.app, "h:room", {"n": n})
    back, welcome = await connect(client, "h:room", since=str(last))
    assert welcome["recovered"] is True and welcome["replayed"] == 50
    assert welcome["joined"] == f"{last.epoch}:{last.offset + 50}"
    replay = await receive_all(back, 50)
    assert [m["n"] for m in replay] == list(range(50))
    assert [m["offset"] for m in replay] == list(range(last.offset + 1, last.offset + 51))
    await other.send_str("live")
    assert (await back.receive_json(timeout=TIMEOUT))["text"] == "live"
    await nothing_more(back)
    for ws in (back, other):
        await ws.close()


async def test_messages_published_while_the_replay_is_written_arrive_once_in_order(
    serve: ClientFactory,
) -> None:
    spry = history_app()
    client = await serve(spry)
    member, first = await connect(client, "h:flow")
    since = parse_position(first["joined"])
    await member.close()
    for n in range(30):
        await spry.publish(client.app, "h:flow", {"n": n})
    stop = asyncio.Event()

    async def keep_publishing() -> int:
        n = 30
        while not stop.is_set():
            await spry.publish(client.app, "h:flow", {"n": n})
            n += 1
            await asyncio.sleep(0)
        return n

    flowing = asyncio.ensure_future(keep_publishing())
    back, welcome = await connect(client, "h:flow", since=str(since))
    await asyncio.sleep(0.05)
    stop.set()
    published = await flowing
    got = await receive_all(back, published)
    assert welcome["recovered"] is True
    assert [m["n"] for m in got] == list(range(published))
    assert [m["offset"] for m in got] == list(range(1, published + 1))
    await nothing_more(back)
    await back.close()


async def test_a_position_the_history_cannot_serve_is_not_recovered(serve: ClientFactory) -> None:
    spry = history_app(size=5)
    client = await serve(spry)
    member, first = await connect(client, "h:small")
    start = parse_position(first["joined"])
    await member.close()
    for n in range(10):
        await spry.publish(client.app, "h:small", {"n": n})
    cases = {
        str(start): False,  # 10 missed, 5 kept
        f"{start.epoch}:5": True,  # exactly the 5 kept
        f"{start.epoch}:99": False,  # a position from the future
        f"other:{start.offset}": False,  # another life of the history
    }
    for since, recovered in cases.items():
        ws, welcome = await connect(client, "h:small", since=since)
        assert welcome["recovered"] is recovered, since
        assert welcome["joined"] == f"{start.epoch}:10"
        if recovered:
            assert [m["n"] for m in await receive_all(ws, 5)] == [5, 6, 7, 8, 9]
        await nothing_more(ws)
        await ws.close()
    stats = client.app[FANOUT_KEY].history_stats()
    assert (stats["recovered"], stats["not_recovered"], stats["replayed"]) == (1, 3, 5)


async def test_hold_sends_nothing_until_resume_and_then_nothing_twice(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    spry.history("h:", size=10, ttl=60)
    resumed = asyncio.Event()
    ready = asyncio.Event()

    @spry.route("/held")
    def held(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            await ws.subscribe("h:held", since=event.query.get("since"), hold=True)
            ready.set()
            await resumed.wait()
            await ws.send_text("first")
            ws.resume("h:held")
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    client = await serve(spry)
    p1 = await client.app[FANOUT_KEY].publish_positioned("h:held", "one")
    ws = await client.ws_connect("/held", params={"since": f"{p1.epoch}:0"})
    await ready.wait()
    await spry.publish(client.app, "h:held", "two")  # live, while held
    resumed.set()
    frames = [await ws.receive_str(timeout=TIMEOUT) for _ in range(3)]
    assert frames[0] == "first"
    assert [json.loads(f)["data"] for f in frames[1:]] == ["one", "two"]
    await nothing_more(ws)
    await ws.close()


async def test_topics_without_history_refuse_since_and_ack_and_skip_the_rules(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    errors: list[str] = []

    @spry.route("/plain")
    def plain(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            for call in (
                ws.subscribe("plain", since="e:1"),
                ws.subscribe("plain", hold=True),
                ws.publish("plain", "x", ack=True),
            ):
                try:
                    await call
                except ValueError as error:
                    errors.append(str(error))
            result = await ws.subscribe("plain")
            await ws.send_json([result.recovered, result.position])
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    client = await serve(spry)
    ws = await client.ws_connect("/plain")
    assert await ws.receive_json(timeout=TIMEOUT) == [None, None]
    assert len(errors) == 3 and all('spry.history("room:"' in e for e in errors), errors
    # No rule at all: a publish never asks the rules (the hot path is untouched).
    with mock.patch.object(HistoryRules, "policy", side_effect=AssertionError("asked")):
        assert await spry.publish(client.app, "plain", "fast") == 1
    assert await ws.receive_str(timeout=TIMEOUT) == "fast"
    await ws.close()


async def test_bytes_on_a_topic_with_history_are_a_type_error(serve: ClientFactory) -> None:
    client = await serve(history_app())
    ws, _ = await connect(client, "h:bin")
    await ws.send_str("bytes:")
    reply = await ws.receive_json(timeout=TIMEOUT)
    assert "not bytes" in reply["error"]
    await ws.close()


async def test_history_needs_a_broker_that_keeps_it() -> None:
    from aiohttp_spry import Broker

    class Plain(Broker):
        async def start(self, deliver: Any) -> None: ...
        async def close(self) -> None: ...
        async def subscribe(self, topic: str) -> None: ...
        def unsubscribe(self, topic: str) -> None: ...
        def publish(self, topic: str, payload: bytes, binary: bool) -> None: ...

    app = web.Application()
    spry = Spry(app, broker=Plain())
    spry.history("h:", size=1, ttl=1)
    with pytest.raises(RuntimeError, match="cannot: use MemoryBroker or RedisBroker"):
        await app[FANOUT_KEY].start(app)


# -- a broker that loses a message on the way: the gap is read from the history ----------


class Lossy:
    """A listener in front of the fan-out that drops the offsets in ``lose`` (a lost message)."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.lose: set[int] = set()

    def deliver_positioned(
        self, topic: str, position: Position, kind: Kind, payload: bytes, msgid: str
    ) -> None:
        if position.offset in self.lose:
            self.lose.discard(position.offset)
            return
        self.listener.deliver_positioned(topic, position, kind, payload, msgid)

    def resync(self, topic: str) -> None:
        self.listener.resync(topic)

    def presence_changed(self, event: PresenceEvent) -> None:
        self.listener.presence_changed(event)


class LossyBroker(MemoryBroker):
    """A memory broker whose deliveries can lose messages, and whose history can be lost."""

    __slots__ = ("forget", "gate", "lossy", "reads")

    def __init__(self) -> None:
        super().__init__()
        self.lossy: Lossy | None = None
        self.forget = False
        self.reads = 0
        self.gate: asyncio.Event | None = None  # while set to an unset Event, reads wait

    def attach(self, listener: Listener, rules: HistoryRules) -> None:
        self.lossy = Lossy(listener)
        super().attach(self.lossy, rules)

    async def read_history(
        self, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        read = await super().read_history(topic, since, policy)
        if self.forget:  # as after a Redis restart without persistence
            return HistoryRead(Position("newlife", 0), ())
        return read


async def test_a_message_lost_on_the_way_is_read_from_the_history_in_order(
    serve: ClientFactory,
) -> None:
    broker = LossyBroker()
    spry = history_app(Spry(broker=broker))
    client = await serve(spry)
    ws, _ = await connect(client, "h:lossy")
    assert broker.lossy is not None
    broker.lossy.lose = {2}
    for n in (1, 2, 3, 4):
        await spry.publish(client.app, "h:lossy", {"n": n})
    got = await receive_all(ws, 4)
    assert [(m["n"], m["offset"]) for m in got] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    await nothing_more(ws)
    await ws.close()


async def test_a_link_that_breaks_again_during_a_catch_up_makes_it_read_once_more(
    serve: ClientFactory,
) -> None:
    broker = LossyBroker()
    spry = history_app(Spry(broker=broker))
    client = await serve(spry)
    ws, _ = await connect(client, "h:again")
    assert broker.lossy is not None
    reads_before = broker.reads
    broker.lossy.lose, broker.gate = {2}, asyncio.Event()
    for n in (1, 2, 3):
        await spry.publish(client.app, "h:again", {"n": n})
    await eventually(lambda: broker.reads == reads_before + 1, what="the catch-up reading")
    client.app[FANOUT_KEY].resync("h:again")  # the broker's link broke again meanwhile
    await spry.publish(client.app, "h:again", {"n": 4})  # held during the catch-up
    broker.gate.set()
    got = await receive_all(ws, 4)
    assert [(m["n"], m["offset"]) for m in got] == [(1, 1), (2, 2), (3, 3), (4, 4)]
    assert broker.reads == reads_before + 2  # read once more after the second break
    await nothing_more(ws)
    await ws.close()


async def test_a_gap_the_history_cannot_fill_closes_with_1012_never_silently(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = LossyBroker()
    spry = history_app(Spry(broker=broker))
    client = await serve(spry)
    ws, _ = await connect(client, "h:gone")
    assert broker.lossy is not None
    await spry.publish(client.app, "h:gone", {"n": 1})
    assert (await ws.receive_json(timeout=TIMEOUT))["n"] == 1
    broker.lossy.lose, broker.forget = {2}, True
    with caplog.at_level(logging.WARNING, "aiohttp_spry.pubsub"):
        await spry.publish(client.app, "h:gone", {"n": 2})
        await spry.publish(client.app, "h:gone", {"n": 3})
        closing = await ws.receive(timeout=TIMEOUT)
    assert closing.type is WSMsgType.CLOSE and closing.data == 1012, closing
    assert "reconnect with since" in closing.extra
    [record] = [r for r in caplog.records if "cannot fill the gap" in r.getMessage()]
    assert "'h:gone'" in record.getMessage() and "1 local session(s)" in record.getMessage()


# -- presence ----------------------------------------------------------------------------


async def test_presence_lists_members_counts_them_and_sends_events_only_to_watchers(
    serve: ClientFactory,
) -> None:
    spry = history_app()
    client = await serve(spry)
    watcher, w_first = await connect(client, "h:p", presence="wat", events="1")
    silent, s_first = await connect(client, "h:p", presence="sil")
    joined = await watcher.receive_json(timeout=TIMEOUT)
    assert joined == {
        "type": "join",
        "topic": "h:p",
        "member": {"id": s_first["id"], "name": "sil"},
    }
    assert await Spry.presence(client.app, "h:p") == {
        w_first["id"]: {"name": "wat"},
        s_first["id"]: {"name": "sil"},
    }
    assert await Spry.presence_count(client.app, "h:p") == 2
    assert client.app[FANOUT_KEY].history_stats()["present_here"] == 2
    await silent.close()
    left = await watcher.receive_json(timeout=TIMEOUT)
    assert left["type"] == "leave" and left["member"]["id"] == s_first["id"]
    assert await Spry.presence_count(client.app, "h:p") == 1
    await watcher.close()
    await eventually(
        lambda: client.app[FANOUT_KEY].topics == frozenset(), what="the topic to be left"
    )
    assert await Spry.presence(client.app, "h:p") == {}


async def test_bad_presence_info_is_a_clear_error(serve: ClientFactory) -> None:
    spry = Spry()
    errors: list[Exception] = []

    @spry.route("/p")
    def p(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            for info in ([1], {"x": object()}, {"x": "y" * 5000}):
                try:
                    await ws.subscribe("p", presence=info)  # type: ignore[arg-type]
                except (TypeError, ValueError) as error:
                    errors.append(error)
            await ws.send_text("done")

        return event.ws.upgrade(session)

    client = await serve(spry)
    ws = await client.ws_connect("/p")
    assert await ws.receive_str(timeout=TIMEOUT) == "done"
    assert [type(e) for e in errors] == [TypeError, TypeError, ValueError], errors
    assert Spry.subscribers(client.app, "p") == frozenset()
    await ws.close()


async def test_a_presence_format_is_called_once_per_event_for_all_its_watchers(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    calls: list[PresenceEvent] = []

    def format(event: PresenceEvent) -> dict[str, str]:
        calls.append(event)
        return {"change": event.change.value, "who": event.id}

    @spry.route("/w")
    def w(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            await ws.subscribe("w", presence={}, presence_events=format)
            await ws.send_text(ws.id)
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    client = await serve(spry)
    watchers = [await client.ws_connect("/w") for _ in range(3)]
    ids = [await ws.receive_str(timeout=TIMEOUT) for ws in watchers]
    for index, ws in enumerate(watchers):  # each saw the later ones join
        later = [(await ws.receive_json(timeout=TIMEOUT))["who"] for _ in ids[index + 1 :]]
        assert later == ids[index + 1 :]
    calls.clear()
    newcomer = await client.ws_connect("/w")
    new_id = await newcomer.receive_str(timeout=TIMEOUT)
    for ws in watchers:
        assert await ws.receive_json(timeout=TIMEOUT) == {"change": "join", "who": new_id}
    assert len(calls) == 1  # one frame for the three watchers
    assert new_id not in ids
    for ws in (*watchers, newcomer):
        await ws.close()


async def test_a_subscriber_closed_for_being_slow_comes_back_with_since_and_loses_nothing(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The slow path carries the framed message (with its position) too; and a session
    closed with 1008 for not keeping up recovers everything after its last position."""
    caplog.set_level(logging.WARNING, "aiohttp_spry.pubsub")
    spry = history_app(Spry(max_queued=8))
    client = await serve(spry)
    reader, first = await connect(client, "h:fire")
    epoch = parse_position(first["joined"]).epoch
    stalled = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await stalled.request("/t/h:fire")).status == 101
    await eventually(lambda: len(Spry.subscribers(client.app, "h:fire")) == 2, what="two")
    chunk = "z" * (256 * 1024)
    published = 0
    for index in range(400):
        await spry.publish(client.app, "h:fire", f"{index}:{chunk}")
        published += 1
        assert (await reader.receive_json(timeout=TIMEOUT))["offset"] == index + 1
        if any("too slow" in r.getMessage() for r in caplog.records):
            break
    hello = await stalled.read_frame()
    assert "joined" in json.loads(hello.payload)
    delivered = 0
    while (frame := await stalled.read_frame()).opcode != CLOSE:
        message = json.loads(frame.payload)
        assert message["offset"] == delivered + 1 and message["epoch"] == epoch
        assert message["data"] == f"{delivered}:{chunk}"
        delivered += 1
    assert frame.close_code == 1008 and 0 < delivered < published
    await stalled.aclose()
    back, welcome = await connect(client, "h:fire", since=f"{epoch}:{delivered}")
    assert welcome["recovered"] is True
    replay = await receive_all(back, published - delivered)
    assert [m["offset"] for m in replay] == list(range(delivered + 1, published + 1))
    await nothing_more(back)
    for ws in (back, reader):
        await ws.close()


def test_redis_presence_settings_are_checked() -> None:
    from aiohttp_spry.pubsub.redis import RedisBroker

    for refresh, ttl in ((15.0, 15.0), (0.0, 15.0), (20.0, 15.0)):
        with pytest.raises(ValueError, match="presence_refresh and presence_ttl"):
            RedisBroker("redis://127.0.0.1:1/0", presence_refresh=refresh, presence_ttl=ttl)
    assert RedisBroker("redis://127.0.0.1:1/0").presence_ttl == 15.0
