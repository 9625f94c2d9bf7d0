"""runtests.py never prints a database password (CI logs are read by more people than the
database's owners)."""

from __future__ import annotations

import pytest

from runtests import database_line, masked


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://app:s3cret@db.internal:6432/shop?sslmode=require",
            "postgresql://app:***@db.internal:6432/shop?sslmode=require",
        ),
        # An unencoded "@" in the password: the host is what follows the last one.
        ("postgres://app:p@ss@db/shop", "postgres://app:***@db/shop"),
        (
            "postgresql:///shop?host=/var/run/postgresql&password=s3cret",
            "postgresql:///shop?host=/var/run/postgresql&password=***",
        ),
        (
            "host=db dbname=shop user=app password=s3cret sslmode=require",
            "host=db dbname=shop user=app password=*** sslmode=require",
        ),
        ("host=db password = 'it\\'s s3cret' dbname=shop", "host=db password = *** dbname=shop"),
        # Every key naming a password: the client key's (sslpassword), in either form.
        (
            "host=db sslcert=c.pem sslpassword=k3y password=s3cret",
            "host=db sslcert=c.pem sslpassword=*** password=***",
        ),
        (
            "postgresql://app@db/shop?sslkey=k.pem&sslpassword=k3y",
            "postgresql://app@db/shop?sslkey=k.pem&sslpassword=***",
        ),
        # Nothing to hide: printed as it is (the embedded server's URLs have an empty password).
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql://postgres:@/postgres?host=/tmp/x",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/postgres",
        ),
        ("host=127.0.0.1 dbname=jobs user=postgres", "host=127.0.0.1 dbname=jobs user=postgres"),
    ],
)
def test_passwords_are_masked(dsn: str, expected: str) -> None:
    assert masked(dsn) == expected


def test_the_database_line_names_the_server_but_not_the_password() -> None:
    line = database_line("postgresql://app:s3cret@db.internal/shop")
    assert "s3cret" not in line
    assert line == "database: postgresql://app:***@db.internal/shop"
    assert database_line(None) == "database: embedded PostgreSQL (DATABASE_URL is unset)"
