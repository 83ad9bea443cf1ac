"""Builds the long-lived objects (bus, pools, API app, writers, the background jobs'
settings) from one Settings."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from datetime import timedelta

import redis
from fastapi import FastAPI

from api.app import create_app
from api.auth import KeyAuthenticator
from api.dependencies import ApiServices
from dagster_project.maintenance import Maintenance
from ingest.bus import BusConsumer, BusPublisher
from ingest.bus.redis_streams import RedisStreamsConsumer, RedisStreamsPublisher
from ingest.decoding import LabelSets
from ingest.intake import Intake
from ingest.rate_limit import RateLimiter, RateLimits
from ingest.validation import Limits, SeriesRules
from ingest.writer import Writer, WriterStats
from querylang.engine import QueryEngine, TierPolicy
from querylang.limits import QueryLimits
from querylang.results_cache import ResultsCache
from querylang.rule_queries import RuleQueries
from querylang.service import QueryService
from storage.database import Pool, connect
from storage.retention import RetentionDefaults, RetentionOverrides
from storage.samples import SampleWriter
from storage.series import SeriesCatalog
from storage.sql_console import SqlConsole, reader_url
from storage.tiers import TIER_NAMES
from vigil.settings import Settings


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client with bounded timeouts, so a dead Redis fails requests quickly."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=10, socket_connect_timeout=3, health_check_interval=30
    )


def bus_publisher(settings: Settings) -> BusPublisher:
    """The configured bus, as the API publishes to it."""
    bus = settings.bus
    if bus.kind == "kafka":
        from ingest.bus.kafka import KafkaPublisher, ensure_topic

        ensure_topic(bus.kafka_bootstrap, bus.kafka_topic, bus.partitions)
        return KafkaPublisher(bus.kafka_bootstrap, bus.kafka_topic, bus.partitions, bus.group)
    return RedisStreamsPublisher(redis_client(settings), bus.stream_prefix, bus.partitions)


def bus_consumer(settings: Settings, name: str) -> BusConsumer:
    """A member of the writers' consumer group on the configured bus."""
    bus = settings.bus
    if bus.kind == "kafka":
        from ingest.bus.kafka import KafkaConsumerMember, ensure_topic

        ensure_topic(bus.kafka_bootstrap, bus.kafka_topic, bus.partitions)
        return KafkaConsumerMember(bus.kafka_bootstrap, bus.kafka_topic, bus.group, name)
    return RedisStreamsConsumer(
        redis_client(settings),
        bus.stream_prefix,
        bus.partitions,
        bus.group,
        name,
        reclaim_idle_ms=bus.reclaim_idle // timedelta(milliseconds=1),
    )


def api_services(settings: Settings) -> ApiServices:
    """Everything the API's routers call."""
    limits = settings.ingest
    pool = Pool(settings.database_url)
    return ApiServices(
        authenticator=KeyAuthenticator(pool),
        intake=Intake(
            publisher=bus_publisher(settings),
            rules=SeriesRules(
                Limits(
                    max_labels=limits.max_labels,
                    max_label_name_length=limits.max_label_name_length,
                    max_label_value_length=limits.max_label_value_length,
                    max_future_us=limits.max_future // timedelta(microseconds=1),
                )
            ),
            rate_limiter=RateLimiter(
                redis_client(settings),
                RateLimits(
                    requests_per_s=limits.requests_per_s,
                    request_burst=limits.request_burst,
                    samples_per_s=limits.samples_per_s,
                    sample_burst=limits.sample_burst,
                ),
            ),
            max_batch_samples=limits.max_batch_samples,
            max_backlog=settings.bus.max_backlog,
        ),
        label_sets=LabelSets(),
        max_body_bytes=limits.max_body_bytes,
        queries=query_service(settings),
        retention=RetentionOverrides(pool, retention_defaults(settings)),
        sql_console=SqlConsole(
            settings.database_url,
            reader_url(settings.database_url),
            row_limit=settings.query.sql_row_limit,
            timeout=settings.query.sql_timeout,
        ),
    )


def query_engine(settings: Settings) -> QueryEngine:
    """The PromQL engine under the configured limits and tier policy."""
    query = settings.query
    return QueryEngine(
        QueryLimits(
            timeout=query.timeout,
            max_series=query.max_series,
            max_points=query.max_points,
            max_samples=query.max_samples,
            lookback=query.lookback_delta,
        ),
        TierPolicy(
            retention_us={
                tier: settings.retention.of(tier) // timedelta(microseconds=1)
                for tier in TIER_NAMES
            },
            points_per_step=settings.rollup.points_per_step,
            raw_sample_budget=query.raw_sample_budget,
            nominal_interval_us=query.nominal_sample_interval // timedelta(microseconds=1),
        ),
    )


def query_service(settings: Settings) -> QueryService:
    """The read path: engine under the configured limits, with the results cache."""
    query = settings.query
    return QueryService(
        Pool(settings.database_url, nice=query.nice),
        query_engine(settings),
        results_cache(settings),
        nice=query.nice,
    )


def rule_queries(settings: Settings) -> RuleQueries:
    """The query function rule evaluation uses: the same engine on a pool of its own
    (so alerts keep evaluating while dashboards are slow), never the results cache."""
    return RuleQueries(
        Pool(settings.database_url, max_size=settings.query.rule_pool_size),
        query_engine(settings),
    )


def results_cache(settings: Settings) -> ResultsCache:
    """The query results cache in Redis (the read path fills it, rollup repair invalidates it)."""
    query = settings.query
    return ResultsCache(
        redis_client(settings),
        freshness_us=query.cache_freshness // timedelta(microseconds=1),
        ttl_s=int(query.cache_ttl.total_seconds()),
    )


def retention_defaults(settings: Settings) -> RetentionDefaults:
    """Each tier's global retention, as retention and its overrides enforce it."""
    return RetentionDefaults({tier: settings.retention.of(tier) for tier in TIER_NAMES})


def maintenance(settings: Settings) -> Maintenance:
    """The rollup, repair and retention jobs' settings."""
    rollup = settings.rollup
    return Maintenance(
        settle_us=rollup.settle // timedelta(microseconds=1),
        max_buckets_per_run=rollup.max_buckets_per_run,
        repair_batch=rollup.repair_batch,
        repair_batches_per_run=rollup.repair_batches_per_run,
        retention=retention_defaults(settings),
    )


def job_settings(database_url: str | None = None, redis_url: str | None = None) -> Settings:
    """VIGIL_* settings as Dagster's processes read them when a job runs, with a
    resource's URLs, where it sets them, in place of the configured ones."""
    settings = Settings()
    urls = {"database_url": database_url, "redis_url": redis_url}
    return settings.model_copy(update={name: url for name, url in urls.items() if url})


def api_app() -> FastAPI:
    """The API app from VIGIL_* settings: the factory `vigil api` hands to uvicorn workers."""
    return create_app(api_services(Settings()))


def writer_threads(
    settings: Settings, consumers: int, stop: threading.Event, stats: WriterStats
) -> list[threading.Thread]:
    """`consumers` writer loops, one thread and consumer-group member each, not started.

    Threads suffice: a writer waits on the database most of the time, and the heavy
    lifting (COPY) happens in PostgreSQL, not under the GIL.
    """
    prefix = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    # One catalog for all consumers: each receives envelopes from every partition, so
    # separate caches would each have to learn every series.
    catalog = SeriesCatalog()
    threads = []
    for number in range(consumers):
        writer = Writer(
            bus_consumer(settings, f"{prefix}-{number}"),
            lambda: connect(settings.database_url),
            SampleWriter(catalog),
            stats=stats,
        )
        threads.append(
            threading.Thread(target=writer.run, args=(stop,), name=f"writer-{number}", daemon=True)
        )
    return threads
