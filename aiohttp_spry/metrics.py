"""Prometheus metrics for an application: ``pip install 'aiohttp_spry[metrics]'``.

Off by default. :func:`enable_metrics` gives the application's session
registry and fan-out a small recorder each (:class:`SessionCounters`,
:class:`FanoutCounters`): plain ints that the code which counts adds to, with
no lock and no label lookup on the message path. A custom collector reads
them when Prometheus scrapes, so a scrape costs the scraper, not the
messages::

    app = web.Application()
    spry = Spry(app)
    enable_metrics(app)                                   # after init_app, before start
    app.router.add_get("/metrics", metrics_handler)

The figures (one ``aiohttp_spry_`` prefix, base units, no per-topic or
per-user label):

==========================================  =======  ===============================================
name                                        type     labels
==========================================  =======  ===============================================
``aiohttp_spry_sessions``                   gauge    open WebSocket sessions
``aiohttp_spry_handshakes_total``           counter  ``outcome`` (accepted, refused), ``status``
``aiohttp_spry_session_closes_total``       counter  ``code`` (1006: no close frame)
``aiohttp_spry_messages_received_total``    counter  ``type`` (text, binary)
``aiohttp_spry_messages_sent_total``        counter  ``type``; sent with ``ws.send_*``
``aiohttp_spry_pubsub_published_total``     counter
``aiohttp_spry_pubsub_delivered_total``     counter  local deliveries (written or queued)
``aiohttp_spry_pubsub_slow_closes_total``   counter  subscribers closed with 1008
``aiohttp_spry_broker_connected``           gauge    1 while other processes are reachable
``aiohttp_spry_broker_outages_total``       counter
==========================================  =======  ===============================================

**Several processes** (gunicorn with ``--workers N``): each worker counts its
own, and a scrape reaches one worker. With ``PROMETHEUS_MULTIPROC_DIR`` set
(prometheus_client's multiprocess mode) each worker copies its totals into
prometheus_client's shared-file metrics every ``sync_interval`` seconds (and
the scraped worker right before answering), and :func:`metrics_handler`
answers with the sum over the workers: counters and ``aiohttp_spry_sessions``
add up; ``aiohttp_spry_broker_connected`` is the minimum over live workers (1:
every worker reaches the broker). gunicorn must call
``prometheus_client.multiprocess.mark_process_dead(worker.pid)`` in its
``child_exit`` hook (``deploy/gunicorn.conf.py`` does).

**Later figures.** The history and presence figures
(``aiohttp_spry_recoveries_total{recovered}``, present members) belong to the
modules that will count them; they plug in with :meth:`SpryMetrics.add_source`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Final, Literal

from aiohttp import web

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        generate_latest,
    )
    from prometheus_client import REGISTRY as DEFAULT_REGISTRY
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as missing:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "aiohttp_spry.metrics needs prometheus_client: pip install 'aiohttp_spry[metrics]'"
    ) from missing

from .extension import SPRY_KEY
from .log import logger
from .pubsub.fanout import FANOUT_KEY, FanoutCounters
from .websocket.counters import SESSION_COUNTERS_KEY, SessionCounters
from .websocket.session import SESSIONS_KEY

#: prometheus_client's multiprocess mode is on when this names a directory.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
PREFIX: Final = "aiohttp_spry_"

#: A source of extra figures: called at each scrape, returns metric families.
Source = Callable[[], Iterable[Metric]]


class SpryMetrics:
    """One application's figures: the recorders it reads, and how they are exported.

    Attributes:
        registry: where the figures are served from (:func:`metrics_handler`).
        multiprocess: whether prometheus_client's multiprocess mode is on.
    """

    def __init__(
        self,
        app: web.Application,
        sessions: SessionCounters,
        fanout: FanoutCounters,
        registry: CollectorRegistry,
        *,
        multiprocess: bool,
        sync_interval: float,
    ) -> None:
        self._app = weakref.ref(app)
        self.sessions = sessions
        self.fanout = fanout
        self.registry = registry
        self.multiprocess = multiprocess
        self.sync_interval = sync_interval
        self._sources: list[Source] = []
        self._shared: _SharedFiles | None = None

    def add_source(self, source: Source) -> None:
        """Add figures read at scrape time by another module.

        The hook for the figures of later capabilities (history recoveries,
        presence): ``source()`` returns prometheus_client metric families
        (counters and gauges), read like the built-in ones, and copied to the
        shared files in multiprocess mode.
        """
        self._sources.append(source)

    # -- reading (at scrape time, never on the message path) -----------------------

    def families(self) -> Iterator[Metric]:
        """Every figure, read from the recorders now."""
        app = self._app()
        if app is None:
            return
        s, f = self.sessions, self.fanout
        broker = app[FANOUT_KEY].broker
        yield _gauge("sessions", "Open WebSocket sessions.", len(app[SESSIONS_KEY]))
        handshakes = CounterMetricFamily(
            PREFIX + "handshakes", "WebSocket handshakes by outcome.", labels=["outcome", "status"]
        )
        handshakes.add_metric(["accepted", "101"], s.accepted)
        for status, count in sorted(s.refused.items()):
            handshakes.add_metric(["refused", str(status)], count)
        yield handshakes
        closes = CounterMetricFamily(
            PREFIX + "session_closes", "Ended WebSocket sessions by close code.", labels=["code"]
        )
        for code, count in sorted(s.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        yield _by_type("messages_received", "Messages received from peers.", s.received_text,
                       s.received_binary)  # fmt: skip
        yield _by_type("messages_sent", "Messages sent with ws.send_*.", s.sent_text,
                       s.sent_binary)  # fmt: skip
        yield _counter("pubsub_published", "Messages published by this process.", f.published)
        yield _counter("pubsub_delivered", "Local pub/sub deliveries.", f.delivered)
        yield _counter(
            "pubsub_slow_closes", "Subscribers closed for falling behind.", f.slow_closes
        )
        yield _gauge(
            "broker_connected", "1 while the broker reaches other processes.", broker.connected
        )
        yield _counter("broker_outages", "Broker connection outages.", broker.outages)
        history = app[FANOUT_KEY].history_stats()  # all 0 without history or presence
        recoveries = CounterMetricFamily(
            PREFIX + "recoveries",
            "Subscribes with since= to a topic with history, by whether every missed "
            "message was replayed.",
            labels=["recovered"],
        )
        recoveries.add_metric(["true"], history["recovered"])
        recoveries.add_metric(["false"], history["not_recovered"])
        yield recoveries
        yield _counter(
            "recovery_replayed_messages", "Messages replayed to recovering sessions.",
            history["replayed"],
        )  # fmt: skip
        yield _counter(
            "history_gaps_closed",
            "Sessions closed with 1012 because a topic's history could not fill a gap.",
            history["gaps_closed"],
        )
        yield _gauge(
            "present_members", "Presences this process holds (sessions with presence=).",
            history["present_here"],
        )  # fmt: skip
        for source in self._sources:
            yield from source()

    # -- multiprocess mode ----------------------------------------------------------

    def sync(self) -> None:
        """Copy the totals into prometheus_client's shared files (multiprocess mode)."""
        if self._shared is None:
            self._shared = _SharedFiles()
        self._shared.write(list(self.families()))

    async def sync_forever(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: sync every ``sync_interval`` s while the application runs."""

        async def loop() -> None:
            failing = False
            while True:
                try:
                    self.sync()
                    failing = False
                except Exception:
                    if not failing:  # once per failure streak, not once per interval
                        logger.exception("Metrics sync to %s failed", os.environ[MULTIPROC_ENV])
                    failing = True
                await asyncio.sleep(self.sync_interval)

        task = asyncio.ensure_future(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.sync()  # the last figures of this worker

    def exposition(self) -> bytes:
        """The scrape's body: this process's figures, or every worker's in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        self.sync()
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


class _Collector:
    """The prometheus_client collector of one application: reads at each scrape."""

    def __init__(self, metrics: SpryMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.families()

    def describe(self) -> Iterator[Metric]:
        # The names, so that a second application on one registry is refused
        # at registration instead of producing duplicate series at scrape time.
        return self._metrics.families()


class _SharedFiles:
    """prometheus_client's own metrics, which write to the multiprocess files.

    Each worker's totals go in by difference (``Counter.inc``), off the
    message path, once per sync.
    """

    def __init__(self) -> None:
        self._registry = CollectorRegistry()  # never served: the files are
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._written: dict[tuple[str, tuple[str, ...]], float] = {}

    def write(self, families: list[Metric]) -> None:
        for family in families:
            for sample in family.samples:
                if family.type == "counter" and not sample.name.endswith("_total"):
                    continue  # the _created sample
                labels = tuple(sample.labels)
                values = tuple(sample.labels[name] for name in labels)
                if family.type == "gauge":
                    gauge = self._gauge(family, labels)
                    (gauge.labels(*values) if values else gauge).set(sample.value)
                    continue
                key = (family.name, values)
                delta = sample.value - self._written.get(key, 0.0)
                if delta > 0:
                    counter = self._counter(family, labels)
                    (counter.labels(*values) if values else counter).inc(delta)
                    self._written[key] = sample.value

    def _counter(self, family: Metric, labels: tuple[str, ...]) -> Counter:
        counter = self._counters.get(family.name)
        if counter is None:
            counter = self._counters[family.name] = Counter(
                family.name, family.documentation, labels, registry=self._registry
            )
        return counter

    def _gauge(self, family: Metric, labels: tuple[str, ...]) -> Gauge:
        gauge = self._gauges.get(family.name)
        if gauge is None:
            mode: Literal["livemin", "livesum"] = (
                "livemin" if family.name == PREFIX + "broker_connected" else "livesum"
            )
            gauge = self._gauges[family.name] = Gauge(
                family.name,
                family.documentation,
                labels,
                registry=self._registry,
                multiprocess_mode=mode,
            )
        return gauge


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=float(value))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=float(value))


def _by_type(name: str, documentation: str, text: int, binary: int) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, documentation, labels=["type"])
    family.add_metric(["text"], text)
    family.add_metric(["binary"], binary)
    return family


#: An application's metrics, once :func:`enable_metrics` has run.
METRICS_KEY: Final = web.AppKey("aiohttp_spry.metrics", SpryMetrics)


def enable_metrics(
    app: web.Application,
    *,
    registry: CollectorRegistry | None = None,
    sync_interval: float = 1.0,
) -> SpryMetrics:
    """Count this application's sessions and pub/sub, and export them to Prometheus.

    Call it after ``Spry(app)`` / ``spry.init_app(app)`` and before the
    application starts. ``registry`` (default: prometheus_client's global
    ``REGISTRY``) is where :func:`metrics_handler` reads them. In
    multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set) every worker writes
    its figures to the shared files every ``sync_interval`` seconds instead.

    Raises:
        RuntimeError: ``app`` has no Spry extension yet, already has metrics,
            or has started.
        ValueError: ``sync_interval`` is not positive, or another application's
            figures are already on ``registry`` (give each its own
            ``CollectorRegistry()``).
    """
    if SPRY_KEY not in app:
        raise RuntimeError(
            f"{app!r} has no Spry extension: call Spry(app) or spry.init_app(app) before "
            "enable_metrics(app)"
        )
    if METRICS_KEY in app:
        raise RuntimeError(f"{app!r} already has metrics; call enable_metrics(app) once")
    if app.frozen:
        raise RuntimeError(f"{app!r} has started; call enable_metrics(app) before running it")
    if not isinstance(sync_interval, (int, float)) or sync_interval <= 0:
        raise ValueError(
            f"sync_interval must be a positive number of seconds, got {sync_interval!r}"
        )
    sessions, fanout = SessionCounters(), FanoutCounters()
    multiprocess = bool(os.environ.get(MULTIPROC_ENV))
    chosen = DEFAULT_REGISTRY if registry is None else registry
    metrics = SpryMetrics(
        app, sessions, fanout, chosen, multiprocess=multiprocess, sync_interval=sync_interval
    )
    if multiprocess:
        app.cleanup_ctx.append(metrics.sync_forever)
    else:
        collector = _Collector(metrics)
        try:
            chosen.register(collector)
        except ValueError as duplicate:
            raise ValueError(
                f"another application's aiohttp_spry metrics are on this registry ({duplicate}); "
                "pass enable_metrics(app, registry=CollectorRegistry()) for each"
            ) from None

        async def unregister(app: web.Application) -> None:
            chosen.unregister(collector)

        app.on_cleanup.append(unregister)
    app[SESSIONS_KEY].count_into(sessions)
    app[FANOUT_KEY].count_into(fanout)
    app[SESSION_COUNTERS_KEY] = sessions
    app[METRICS_KEY] = metrics
    logger.info(
        "Metrics enabled%s",
        f" (multiprocess mode, {os.environ[MULTIPROC_ENV]})" if multiprocess else "",
    )
    return metrics


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: the application's figures in Prometheus' text format.

    Raises:
        web.HTTPNotFound: metrics are not enabled on this application.
    """
    metrics = request.app.get(METRICS_KEY)
    if metrics is None:
        raise web.HTTPNotFound(text="metrics are not enabled on this application")
    body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
