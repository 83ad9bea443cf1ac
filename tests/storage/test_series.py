"""The series catalog: stable fingerprints, one id per series, tenants apart, last_seen."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from storage import tenants
from storage.database import connect
from storage.series import LAST_SEEN_RESOLUTION_US, SeriesCatalog, SeriesKey, SeriesTimes
from storage.tenants import Tenant
from storage.timestamps import to_datetime

T0 = 1_790_000_000_000_000


def test_fingerprint_is_stable_across_releases() -> None:
    # Stored in every series row: changing it would split every series in two.
    key = SeriesKey.of("cpu_usage", {"region": "us-east", "host": "server-1"})
    assert key.fingerprint().hex() == "aa040c39c33e4fee36d3b8a63f0be211"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (SeriesKey.of("m", {"a": "bc"}), SeriesKey.of("m", {"ab": "c"})),
        (SeriesKey.of("m", {"a": "", "b": ""}), SeriesKey.of("m", {"a": "b"})),
        (SeriesKey.of("ma", {}), SeriesKey.of("m", {"a": ""})),
        (SeriesKey.of("m", {}), SeriesKey.of("n", {})),
    ],
)
def test_fingerprints_of_different_series_differ(a: SeriesKey, b: SeriesKey) -> None:
    assert a.fingerprint() != b.fingerprint()


def test_label_order_does_not_matter() -> None:
    assert SeriesKey.of("m", {"a": "1", "b": "2"}) == SeriesKey.of("m", {"b": "2", "a": "1"})


def one(key: SeriesKey, first: int = T0, last: int = T0) -> list[SeriesTimes]:
    return [SeriesTimes(key, first, last)]


def test_a_series_gets_one_id_in_every_process(conn: psycopg.Connection, tenant: Tenant) -> None:
    key = SeriesKey.of("up", {"job": "node"})
    first = SeriesCatalog().resolve(conn, tenant.id, one(key))
    again = SeriesCatalog().resolve(conn, tenant.id, one(key) * 3)
    assert again == first * 3
    row = conn.execute(
        "SELECT metric, labels, first_seen FROM vigil.series WHERE id = %s", first
    ).fetchone()
    assert row == ("up", {"job": "node"}, to_datetime(T0))


def test_tenants_have_separate_series(conn: psycopg.Connection, tenant: Tenant) -> None:
    other = tenants.create_tenant(conn, f"{tenant.name}-other").tenant
    key = SeriesKey.of("up", {"job": "node"})
    catalog = SeriesCatalog()
    assert catalog.resolve(conn, tenant.id, one(key)) != catalog.resolve(conn, other.id, one(key))


def test_concurrent_registration_yields_one_row(database_url: str, tenant: Tenant) -> None:
    keys = [SeriesKey.of("load", {"host": f"h{i}"}) for i in range(500)]
    barrier = threading.Barrier(4)
    results: list[list[int]] = []

    def register(order: list[SeriesKey]) -> None:
        with connect(database_url) as conn:
            barrier.wait()
            ids = SeriesCatalog().resolve(conn, tenant.id, [SeriesTimes(k, T0, T0) for k in order])
            results.append([ids[order.index(k)] for k in keys])

    orders = [keys, keys[::-1], keys[250:] + keys[:250], keys]
    threads = [threading.Thread(target=register, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert len(set(results[0])) == 500


def last_seen(conn: psycopg.Connection, series_id: int) -> object:
    row = conn.execute("SELECT last_seen FROM vigil.series WHERE id = %s", (series_id,)).fetchone()
    assert row is not None
    return row[0]


def test_last_seen_moves_forward_by_resolution(conn: psycopg.Connection, tenant: Tenant) -> None:
    key = SeriesKey.of("up", {})
    catalog = SeriesCatalog()
    (series_id,) = catalog.resolve(conn, tenant.id, one(key))
    # Within the resolution: no catalog write.
    catalog.resolve(conn, tenant.id, one(key, T0, T0 + LAST_SEEN_RESOLUTION_US - 1))
    assert last_seen(conn, series_id) == to_datetime(T0)
    later = T0 + LAST_SEEN_RESOLUTION_US + 5
    catalog.resolve(conn, tenant.id, one(key, later, later))
    assert last_seen(conn, series_id) == to_datetime(later)
    # A cold cache with older data never moves it back.
    SeriesCatalog().resolve(conn, tenant.id, one(key))
    assert last_seen(conn, series_id) == to_datetime(later)
    # A cold cache with much newer data moves it.
    newest = later + int(timedelta(hours=2).total_seconds() * 1e6)
    SeriesCatalog().resolve(conn, tenant.id, one(key, newest, newest))
    assert last_seen(conn, series_id) == to_datetime(newest)


def test_cache_is_bounded(conn: psycopg.Connection, tenant: Tenant) -> None:
    catalog = SeriesCatalog(max_cached=1_000)
    keys = [SeriesTimes(SeriesKey.of("m", {"i": str(i)}), T0, T0) for i in range(2_500)]
    first = catalog.resolve(conn, tenant.id, keys)
    assert catalog.cached <= 1_000
    assert catalog.resolve(conn, tenant.id, keys) == first
