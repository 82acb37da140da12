"""RFC 6455 §5.1: a server must close the connection on an unmasked client frame.

aiohttp's frame reader accepts unmasked frames and offers no public hook on the
raw bytes, so this module holds the package's uses of aiohttp private
attributes, all of them here and checked by ``tests/test_masking.py``:

- ``RequestHandler._payload_parser``: once upgraded, every byte the client
  sends goes to its ``feed_data()``. A :class:`_FrameCheck` takes its place and
  passes the bytes on.
- ``RequestHandler._message_tail``: the bytes that came after the handshake
  (in the same read, or before the handler got to ``prepare()``). aiohttp feeds
  them to its reader *inside* ``prepare()``, before any code after it runs, so
  they are taken out before ``prepare()`` and fed through the check after it.
- ``RequestHandler._upgraded``: whether aiohttp switched the connection over,
  i.e. whether there is a tail to take at all.
- ``WebSocketResponse._reader``: the message queue ``receive()`` reads. A
  violation is put there as aiohttp's own ``WebSocketError(1002)``, behind the
  messages of the frames before it, so the session handles those first and
  then aiohttp closes with 1002 exactly as for the protocol errors it detects
  itself (and the session logs it).

:class:`_FrameCheck` reads only frame headers and skips payload bytes by
count, so it costs a few integer operations per frame and nothing per payload
byte. Besides the MASK bit it enforces two rules aiohttp's reader misses: RSV1
on a control frame (RFC 7692 §6.1, also with permessage-deflate) and a new data
frame while a fragmented message is open (RFC 6455 §5.4, which aiohttp misses
after an empty first fragment).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Final, Protocol

from aiohttp import WebSocketError, WSCloseCode, web

from ..log import logger

#: RequestHandler: the parser every byte of an upgraded connection goes to.
_PARSER_ATTRIBUTE: Final = "_payload_parser"
#: RequestHandler: bytes after the handshake, held until ``set_parser()``.
_TAIL_ATTRIBUTE: Final = "_message_tail"
#: BaseProtocol: the HTTP parser handed the connection over (there may be a tail).
_UPGRADED_ATTRIBUTE: Final = "_upgraded"
#: WebSocketResponse: the queue of parsed messages ``receive()`` reads.
_QUEUE_ATTRIBUTE: Final = "_reader"

_REFUSED: Final = (True, b"")  # what aiohttp's reader returns on a protocol error


class Violation(enum.Enum):
    """A client frame header the server must fail the connection for (close code 1002)."""

    UNMASKED = "unmasked client frame (RFC 6455 §5.1: a client masks every frame)"
    COMPRESSED_CONTROL = "RSV1 set on a control frame (RFC 7692 §6.1)"
    INTERLEAVED = "new data frame while a fragmented message is open (RFC 6455 §5.4)"

    def __str__(self) -> str:
        return self.value


class _Parser(Protocol):
    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


class _Queue(Protocol):
    def set_exception(self, exc: BaseException) -> None: ...


def mask_check_available() -> bool:
    """Whether this aiohttp has the internals the check needs (checked on the classes)."""
    slots = {name for cls in web.RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    return (
        {_PARSER_ATTRIBUTE, _TAIL_ATTRIBUTE, _UPGRADED_ATTRIBUTE} <= slots
        and callable(getattr(web.RequestHandler, "set_parser", None))
        and hasattr(web.WebSocketResponse, _QUEUE_ATTRIBUTE)
    )


def warn_if_unavailable() -> bool:
    """Log one WARNING if the check cannot be installed; return whether it can.

    Call once at application startup.
    """
    if mask_check_available():
        return True
    logger.warning(
        "aiohttp %s changed the internals the client frame check relies on "
        "(RequestHandler.%s/.%s/.%s, WebSocketResponse.%s): WebSocket connections are "
        "served without enforcing RFC 6455 §5.1 (masked client frames); "
        "see aiohttp_spry/websocket/masking.py",
        _aiohttp_version(),
        _PARSER_ATTRIBUTE,
        _TAIL_ATTRIBUTE,
        _UPGRADED_ATTRIBUTE,
        _QUEUE_ATTRIBUTE,
    )
    return False


async def prepare_checked(
    request: web.Request, response: web.WebSocketResponse, transport: asyncio.Transport
) -> None:
    """``await response.prepare(request)``, then check every client frame of the connection.

    aiohttp parses the bytes that followed the handshake inside ``prepare()``,
    so they are taken out before it and fed through the check after it. While
    ``prepare()`` runs the connection is not read (nothing is lost; the kernel
    buffers it). If ``prepare()`` raises, the connection is left as it was.
    Where aiohttp's internals are not as expected this is ``prepare()`` alone
    (:func:`warn_if_unavailable` says so at startup). ``transport`` is
    ``request.transport``, which the caller has checked is not ``None``.
    """
    protocol: Any = request.protocol
    tail = getattr(protocol, _TAIL_ATTRIBUTE, None)
    if (
        getattr(protocol, _PARSER_ATTRIBUTE, True) is not None
        or type(tail) is not bytes
        or getattr(protocol, _UPGRADED_ATTRIBUTE, None) is not True
    ):
        await response.prepare(request)  # internals changed, or no upgrade to finish
        return
    setattr(protocol, _TAIL_ATTRIBUTE, b"")
    # Then nothing may reach aiohttp's reader unchecked while prepare() runs.
    # (Pausing costs two epoll calls, so only when needed.)
    paused = _prepare_may_yield(request, transport)
    if paused:
        protocol.pause_reading()
    try:
        await response.prepare(request)
    except BaseException:
        _hand_back(protocol, tail, paused)
        raise
    parser: _Parser | None = getattr(protocol, _PARSER_ATTRIBUTE, None)
    if parser is None:  # aiohttp did not switch over after all: as if prepare() had failed
        _hand_back(protocol, tail, paused)
        return
    queue = getattr(response, _QUEUE_ATTRIBUTE, None)
    if queue is not None:
        parser = _FrameCheck(parser, queue)
        setattr(protocol, _PARSER_ATTRIBUTE, parser)
    # Resumed first so that aiohttp's flow control sees the tail's messages.
    if paused:
        protocol.resume_reading()
    if tail and parser.feed_data(tail)[0]:
        protocol.close()  # as aiohttp does when its reader fails


def _hand_back(protocol: Any, tail: bytes, paused: bool) -> None:
    """``prepare()`` failed: the tail goes back where it was, to aiohttp's HTTP side or reader."""
    parser: _Parser | None = getattr(protocol, _PARSER_ATTRIBUTE, None)
    if parser is None:
        # Refused before the switch: aiohttp reads the tail as HTTP, as without us.
        setattr(protocol, _TAIL_ATTRIBUTE, tail + getattr(protocol, _TAIL_ATTRIBUTE))
        if paused:
            protocol.resume_reading()
        return
    # Switched over, then failed (the peer left): its reader gets the tail, unchecked
    # and never read by anyone, as without us.
    if paused:
        protocol.resume_reading()
    if tail and parser.feed_data(tail)[0]:
        protocol.close()


def _prepare_may_yield(request: web.Request, transport: asyncio.Transport) -> bool:
    """Whether ``WebSocketResponse.prepare()`` may let the event loop run (and so read).

    It awaits the ``on_response_prepare`` signals of the applications on the
    route's path, and at its end a drain that waits only while the transport is
    over its high-water mark: with no signal handlers and nothing buffered (the
    101 is ~150 bytes), it runs to its end without yielding, and no byte can
    arrive meanwhile. ``tests/test_masking.py`` checks that on this aiohttp.
    """
    if transport.get_write_buffer_size():
        return True
    for app in request.match_info.apps:  # noqa: SIM110 - a loop: no generator per handshake
        if app.on_response_prepare:
            return True
    return False


# Fragmentation states (RFC 6455 §5.4), as offsets into _NEXT_STATE.
_CLOSED: Final = 0  # no fragmented message open
_OPEN: Final = 256  # a text or binary frame without FIN came, its continuations follow
_REFUSE: Final = 512  # the frame breaks a rule: fail the connection
#: What the fast loop adds to its position for a second header byte it cannot
#: handle (unmasked, or a 16/64-bit length): far past any read, so the loop ends.
_FAR: Final = 1 << 62


def _next_state(state: int, first: int) -> int:
    """The state after a frame whose first header byte is ``first``.

    Rules aiohttp's reader misses: RSV1 on a control frame (RFC 7692 §6.1,
    whatever was negotiated) and a text or binary frame while a fragmented
    message is open (§5.4; aiohttp only sees it when fragments were non-empty).
    Everything else in the first byte (other RSV bits, unknown opcodes, a
    continuation with nothing open) aiohttp's reader refuses itself.
    """
    opcode = first & 0x0F
    if state == _REFUSE or (opcode > 7 and first & 0x40):
        return _REFUSE
    if opcode in (1, 2):
        if state == _OPEN:
            return _REFUSE
        return _CLOSED if first & 0x80 else _OPEN
    if opcode == 0 and first & 0x80:
        return _CLOSED  # the final continuation ends the message
    return state


#: _NEXT_STATE[state + first byte]: the state after that frame (_REFUSE absorbs).
_NEXT_STATE: Final = tuple(
    _next_state(state, first) for state in (_CLOSED, _OPEN, _REFUSE) for first in range(256)
)
#: The second header byte of a masked frame whose length follows in 16 bits.
_MASKED_16_BIT: Final = 0x80 | 126
#: _STEP[second byte]: header and payload size of a masked frame with a 7-bit length.
_STEP: Final = tuple(6 + (b & 0x7F) if b >= 0x80 and b & 0x7F < 126 else _FAR for b in range(256))


class _FrameCheck:
    """Sits in front of aiohttp's WebSocket reader; sees every header, skips payloads.

    State across reads: the payload bytes still to skip, the start of a header
    cut by a read (at most 9 bytes), and the fragmentation state.
    """

    __slots__ = ("_head", "_parser", "_queue", "_skip", "_state", "_violation")

    def __init__(self, parser: _Parser, queue: _Queue) -> None:
        self._parser = parser
        self._queue = queue
        self._skip = 0
        self._head = b""
        self._state = _CLOSED
        self._violation: Violation | None = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        pos = self._skip
        end = len(data)
        if pos >= end:  # inside one payload the whole read long
            self._skip = pos - end
            return self._parser.feed_data(data)
        if not self._head:
            # The hot path: masked frames with a 7-bit length, two table
            # lookups each. Anything else (a violation, a longer length, a
            # header cut at the end) leaves it for _feed_carefully, which
            # starts this read again.
            state = self._state
            last = end - 1
            next_state, step = _NEXT_STATE, _STEP  # locals: ~6% of the loop
            if pos < last and data[pos + 1] == _MASKED_16_BIT:
                # Frames of 126 to 65535 bytes (a 4 KiB message): the same walk, the
                # 16-bit length read inline; a header in the last 3 bytes of the read
                # goes the careful way.
                last = end - 3
                while pos < last:
                    state = next_state[state + data[pos]]
                    second = data[pos + 1]
                    if second == _MASKED_16_BIT:
                        pos += 8 + (data[pos + 2] << 8 | data[pos + 3])
                    else:
                        pos += step[second]
                if pos < end:
                    pos = _FAR
            else:
                while pos < last:
                    state = next_state[state + data[pos]]
                    pos += step[data[pos + 1]]
            if state != _REFUSE and end <= pos < _FAR:
                self._state = state
                self._skip = pos - end
                return self._parser.feed_data(data)
        return self._feed_carefully(data)

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def _feed_carefully(self, data: bytes) -> tuple[bool, bytes]:
        head = self._head  # the start of a header the previous read cut
        self._head = b""
        buffer = head + data if head else data
        end = len(buffer)
        pos = self._scan(buffer, self._skip, end)
        if pos < end:
            if self._violation is not None:
                # aiohttp's reader gets the frames before it, never its header.
                return self._refuse(data[: max(pos - len(head), 0)])
            self._head = buffer[pos:]  # judged when the rest comes
            pos = end
        self._skip = pos - end
        return self._parser.feed_data(data)

    def _scan(self, data: bytes, pos: int, end: int) -> int:
        """Walk the frame headers from ``pos``; return where the next header starts.

        Stops before ``end`` at a header that is cut (the caller keeps it) or
        that breaks a rule (``_violation`` says which).
        """
        state = self._state
        while pos + 1 < end:
            first = data[pos]
            second = data[pos + 1]
            if second < 0x80:
                self._violation = Violation.UNMASKED
                break
            new_state = _NEXT_STATE[state + first]
            if new_state == _REFUSE:
                opcode = first & 0x0F
                self._violation = (
                    Violation.COMPRESSED_CONTROL if opcode > 7 else Violation.INTERLEAVED
                )
                break
            length = second & 0x7F
            if length < 126:
                size = 6 + length  # 2 header bytes, 4 mask bytes, the payload
            elif length == 126:
                if end - pos < 4:
                    break
                size = 8 + (data[pos + 2] << 8 | data[pos + 3])
            else:
                if end - pos < 10:
                    break
                size = 14 + int.from_bytes(data[pos + 2 : pos + 10], "big")
            state = new_state
            pos += size
        self._state = state
        return pos

    def _refuse(self, before: bytes) -> tuple[bool, bytes]:
        """Pass on the frames before the violation, then fail the connection after them."""
        if before and self._parser.feed_data(before)[0]:
            return _REFUSED  # aiohttp's reader failed on an earlier frame: its error stands
        assert self._violation is not None
        self._queue.set_exception(WebSocketError(WSCloseCode.PROTOCOL_ERROR, str(self._violation)))
        return _REFUSED  # aiohttp then stops reading this connection


def _aiohttp_version() -> str:
    import aiohttp

    return aiohttp.__version__
