"""The queue stores the API-edition tests run against: the embedded SQLite file, and PostgreSQL
when `ATELIER_TEST_POSTGRES` names a server (scripts/test starts a private cluster and sets it;
under CI=true a missing server fails the PostgreSQL cases instead of skipping them)."""
import os
import uuid

import pytest

STORES = ["sqlite", "postgres"]


def postgres_url():
    url = os.environ.get("ATELIER_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("ATELIER_TEST_POSTGRES is not set: scripts/test starts PostgreSQL for these tests")
        pytest.skip("no PostgreSQL server (set ATELIER_TEST_POSTGRES, as scripts/test does)")
    return url


def store_flags(request, store):
    """Flags for `atelier serve` selecting the store; each PostgreSQL test gets its own schema."""
    if store == "sqlite":
        return []
    url = postgres_url()
    schema = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in url else "?"
    return ["--queue-db", f"{url}{sep}schema={schema}"]
