"""Limits: the pool's settings as one value; the separate keyword arguments still work."""

from __future__ import annotations

import pytest

import anyapi_async as aa

from ..conftest import API_KEY, BASE_URL


async def test_defaults_and_keywords_agree() -> None:
    """No arguments give Limits(); separate keywords build the same value as limits=."""
    async with aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL) as plain:
        assert plain.limits == aa.Limits(100, max_connections_per_host=0, keepalive_timeout=30)
    async with aa.AsyncClient(
        api_key=API_KEY, base_url=BASE_URL, max_connections=7, keepalive_timeout=5
    ) as by_keyword:
        assert by_keyword.limits == aa.Limits(7, keepalive_timeout=5)
    limits = aa.Limits(max_connections=3, max_connections_per_host=2)
    async with aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL, limits=limits) as c:
        assert c.limits is limits
        assert c.with_options(timeout=5).limits is limits
    assert repr(limits) == (
        "Limits(max_connections=3, max_connections_per_host=2, keepalive_timeout=30.0)"
    )


def test_both_forms_at_once_are_refused() -> None:
    """limits= together with a separate pool keyword is an error naming the keyword."""
    with pytest.raises(TypeError, match=r"max_connections=\.\.\., not both"):
        aa.AsyncClient(api_key=API_KEY, base_url=BASE_URL, limits=aa.Limits(), max_connections=5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_connections": 0}, "max_connections must be >= 1"),
        ({"max_connections": -1}, "max_connections must be an int >= 0"),
        ({"max_connections_per_host": 1.5}, "max_connections_per_host must be an int"),
        ({"keepalive_timeout": -1}, "keepalive_timeout must be >= 0"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, object], match: str) -> None:
    """Each bad limit raises a ValueError naming it."""
    with pytest.raises(ValueError, match=match):
        aa.Limits(**kwargs)  # type: ignore[arg-type]
