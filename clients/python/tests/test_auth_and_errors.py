"""Credentials (API key, Bearer, dev-mode principal, admin token) and the typed errors, each
provoked on a real server."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from astrocyte_client import (
    APIError,
    AsyncAstrocyte,
    Astrocyte,
    AstrocyteConnectionError,
    AstrocyteError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    PiiRejectedError,
    UnauthenticatedError,
)

from conftest import ADMIN_TOKEN, free_port


def bank() -> str:
    return "k" + uuid.uuid4().hex[:12]


# --- API-key mode -------------------------------------------------------------------------------

def test_api_key_header_and_bearer_reach_the_keys_tenant(keyed_server):
    b = bank()
    with Astrocyte(keyed_server.base_url, api_key=keyed_server.keys["tenant_a"]) as alice:
        stored = alice.retain("Alice keeps bees on the roof.", b)
        assert stored.stored
        assert [h.text for h in alice.recall("bees roof", bank_id=b).hits] == ["Alice keeps bees on the roof."]
    with Astrocyte(keyed_server.base_url, bearer_token=keyed_server.keys["tenant_a"]) as alice_bearer:
        assert b in alice_bearer.banks()
        assert alice_bearer.recall("bees", bank_id=b).hits[0].memory_id == stored.memory_id
    with Astrocyte(keyed_server.base_url, api_key=keyed_server.keys["tenant_b"]) as bob:
        assert b not in bob.banks()
        assert bob.recall("bees roof", bank_id=b).hits == []


def test_api_key_mode_async(keyed_server):
    b = bank()

    async def scenario():
        async with AsyncAstrocyte(keyed_server.base_url, api_key=keyed_server.keys["tenant_b"]) as bob:
            assert (await bob.retain("Bob's fern needs water on Mondays.", b)).stored
            assert b in await bob.banks()
        async with AsyncAstrocyte(keyed_server.base_url) as nobody:
            with pytest.raises(UnauthenticatedError):
                await nobody.recall("fern", bank_id=b)

    asyncio.run(scenario())


@pytest.mark.parametrize("credentials", [{}, {"api_key": "ak_forged"}, {"bearer_token": "ak_forged"}])
def test_missing_or_forged_key_is_unauthenticated(keyed_server, credentials):
    with Astrocyte(keyed_server.base_url, max_retries=0, **credentials) as brain:
        with pytest.raises(UnauthenticatedError) as raised:
            brain.recall("anything", bank_id="notes")
    error = raised.value
    assert error.status == 401
    assert error.detail == "authentication_failed"
    assert error.headers.get("www-authenticate", "").startswith("Bearer")
    assert isinstance(error, APIError) and isinstance(error, AstrocyteError)


# --- dev mode with grants, an admin token, PII rejection, a body cap --------------------------

def test_principal_header_selects_the_grants(guarded_server):
    b = bank()
    with Astrocyte(guarded_server.base_url, principal="agent:writer") as writer:
        assert writer.retain("The writer may write here.", b).stored
    with Astrocyte(guarded_server.base_url, principal="agent:reader") as reader:
        assert [h.text for h in reader.recall("writer write", bank_id=b).hits] == ["The writer may write here."]
        with pytest.raises(ForbiddenError) as raised:
            reader.retain("The reader may not.", b)
        assert raised.value.status == 403
        assert "agent:reader" in raised.value.detail and "write" in raised.value.detail
    with Astrocyte(guarded_server.base_url) as anonymous:
        with pytest.raises(ForbiddenError) as raised:
            anonymous.recall("writer", bank_id=b)
        assert "anonymous" in raised.value.detail


def test_admin_routes_want_the_admin_token(guarded_server):
    b = bank()
    with Astrocyte(guarded_server.base_url, principal="agent:writer") as writer:
        writer.retain("Admin token probe.", b)
        assert b in writer.banks()  # GET /v1/banks is not an admin route
        with pytest.raises((UnauthenticatedError, ForbiddenError)) as raised:
            list(writer.export_bank(b))
        assert "X-Admin-Token" in raised.value.detail
    with Astrocyte(guarded_server.base_url, principal="agent:writer", admin_token=ADMIN_TOKEN) as admin:
        assert b in admin.banks()
        assert len(list(admin.export_bank(b))) == 2


def test_pii_rejection_names_the_types(guarded_server):
    with Astrocyte(guarded_server.base_url, principal="agent:writer") as writer:
        with pytest.raises(PiiRejectedError) as raised:
            writer.retain("Write to alice@example.com about the keys.", bank())
    assert raised.value.status == 422
    assert "email" in raised.value.pii_types
    assert raised.value.detail


def test_body_over_the_cap_is_payload_too_large(guarded_server):
    with Astrocyte(guarded_server.base_url, principal="agent:writer") as writer:
        with pytest.raises(PayloadTooLargeError) as raised:
            writer.retain("word " * 4000, bank())
    assert raised.value.status == 413
    assert "too large" in raised.value.detail.lower()


# --- plain errors on the dev server -----------------------------------------------------------

def test_bad_requests_carry_the_servers_detail(dev_server):
    with Astrocyte(dev_server.base_url) as brain:
        with pytest.raises(BadRequestError) as raised:
            brain.recall("q", bank_id="bad bank!")
        assert raised.value.status == 400 and raised.value.detail
        assert raised.value.request_id  # the server's x-request-id, for support
        with pytest.raises(BadRequestError) as raised:
            brain.retain("nul \x00 inside", "notes")
        assert "NUL" in raised.value.detail or "nul" in raised.value.detail.lower()
        with pytest.raises(BadRequestError) as raised:
            brain.history("q", "notes", "not a date")
        assert "as_of" in raised.value.detail or "datetime" in raised.value.detail
        with pytest.raises(NotFoundError):
            brain.job("01abcdef")


def test_unreachable_server_is_a_connection_error():
    with Astrocyte(f"http://127.0.0.1:{free_port()}", timeout=5) as brain:
        with pytest.raises(AstrocyteConnectionError):
            brain.health()
