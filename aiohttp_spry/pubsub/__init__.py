"""Topic publish/subscribe for WebSocket sessions.

Sessions subscribe with ``await ws.subscribe(topic)``; messages go out with
``await ws.publish(topic, data)`` (everyone but the sender) or
``await spry.publish(app, topic, data)`` (everyone; from HTTP routes and
background tasks). Local delivery happens in-process (:mod:`.fanout`); the
application's :class:`Broker` carries messages between processes:
:class:`MemoryBroker` (the default: this process only) or
:class:`~aiohttp_spry.pubsub.redis.RedisBroker` (``pip install 'aiohttp_spry[redis]'``).
"""

from __future__ import annotations

from .broker import Broker, Deliver, broker_from_url
from .fanout import FANOUT_KEY, Fanout
from .memory import MemoryBroker

__all__ = ["FANOUT_KEY", "Broker", "Deliver", "Fanout", "MemoryBroker", "broker_from_url"]
