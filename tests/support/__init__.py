"""What the tests and the benchmarks share: the wire codec, raw clients, polling, processes.

Nothing here imports the rest of ``tests/`` or ``bench/``: both import from here.

- :mod:`tests.support.wire`: WebSocket frames and handshakes as bytes (on ``websockets.frames``);
- :mod:`tests.support.rawws`: a raw asyncio-stream WebSocket client for exact bytes;
- :mod:`tests.support.polling`: ``await eventually(condition)``, the one polling loop;
- :mod:`tests.support.procs`: free ports, child processes started, awaited and stopped by PID;
- :mod:`tests.support.redisproc`: a real ``redis-server`` on a free port;
- :mod:`tests.support.optional`: skip, or fail under ``SPRY_REQUIRE_OPTIONAL=1``, without a tool.
"""
