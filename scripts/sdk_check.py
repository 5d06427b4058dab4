#!/usr/bin/env python3
"""Drives security-update-server through Microsoft's own Python SDK (msgraph-beta-sdk) and
checks what the SDK sees: the object, $select / $expand, /users/{id}/security, If-Match,
Prefer: return=minimal, the error codes of README's table, and JSON batching through
msgraph-core's BatchRequestBuilder.

    python sdk_check.py --addr 127.0.0.1:PORT --token TOKEN [--user-id ID] [--upn UPN]

scripts/sdk_check.sh starts a server and runs this in a pinned venv. One line per assertion;
exit status 1 if any failed.
"""

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta, timezone

from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.native_response_handler import NativeResponseHandler
from kiota_http.middleware.options import HeadersInspectionHandlerOption, ResponseHandlerOption
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.security.security import Security
from msgraph_beta.generated.users.item.security.security_request_builder import (
    SecurityRequestBuilder,
)
from msgraph_core import AzureIdentityAuthenticationProvider
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent

ODATA_TYPE = "#microsoft.graph.security.security"
# The dev-mode principal the server prints a token for (server/src/dev.rs).
DEV_USER = "00000000-0000-4000-8000-0000000000a1"
DEV_UPN = "demo@security-update.invalid"
OTHER_USER = "00000000-0000-4000-8000-0000000000b2"

results = []
STARTED = time.monotonic()


def check(name, ok, detail=""):
    results.append(ok)
    at = time.monotonic() - STARTED
    print(f"{'PASS' if ok else 'FAIL'} {at:6.2f}s  {name}" + (f"  ({detail})" if detail else ""), flush=True)
    return ok


class StaticTokenCredential:
    """An azure-core AsyncTokenCredential that hands out one fixed token (the server's dev token)."""

    def __init__(self, token):
        self._token = token

    async def get_token(self, *scopes, **kwargs):
        expires = int((datetime.now(timezone.utc) + timedelta(hours=1)).timestamp())
        return AccessToken(self._token, expires)

    async def close(self):
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *args):
        pass


def make_client(addr, token):
    """GraphServiceClient over http://ADDR/beta. The SDK sends a token only to the hosts its auth
    provider allows (by default the Graph national clouds) and only over https, except to
    localhost / 127.0.0.1 / [::1], which kiota's AzureIdentityAccessTokenProvider lets use http."""
    host = addr.rsplit(":", 1)[0].strip("[]")
    auth = AzureIdentityAuthenticationProvider(
        StaticTokenCredential(token),
        scopes=["https://graph.microsoft.com/.default"],
        allowed_hosts=[host],
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = f"http://{addr}/beta"
    return GraphServiceClient(request_adapter=adapter), adapter


def config(headers=None, select=None, expand=None, inspect=None):
    query = None
    if select or expand:
        query = SecurityRequestBuilder.SecurityRequestBuilderGetQueryParameters(
            select=select, expand=expand
        )
    options = [inspect] if inspect else None
    cfg = RequestConfiguration(query_parameters=query, options=options)
    for name, value in (headers or {}).items():
        cfg.headers.add(name, value)
    return cfg


def header(option, name):
    values = option.response_headers.get(name.lower()) or set()
    return next(iter(values), None)


async def expect_error(name, call, status, code):
    try:
        await call
    except ODataError as error:
        got_code = error.error.code if error.error else None
        inner = error.error.inner_error if error.error else None
        request_id = getattr(inner, "request_id", None)
        return check(
            name,
            error.response_status_code == status and got_code == code and bool(request_id),
            f"{error.response_status_code} {got_code}, innerError.request-id {request_id}",
        )
    except Exception as error:  # noqa: BLE001 - any other failure is a failed assertion
        return check(name, False, f"{type(error).__name__}: {error}")
    return check(name, False, f"expected {status} {code}, the call succeeded")


async def run(addr, token, user_id, upn):
    client, adapter = make_client(addr, token)
    # msgraph-beta-sdk 1.66.0 has `me` as a method (msgraph-sdk has a property).
    me = (client.me() if callable(client.me) else client.me).security

    # 1. Seed: Graph's own example through the SDK.
    seeded = await me.patch(Security(odata_type=ODATA_TYPE))
    check("PATCH /me/security (Graph's example) -> Security",
          seeded is not None and seeded.odata_type == ODATA_TYPE and bool(seeded.id),
          f"id {seeded.id if seeded else None}")
    object_id = seeded.id if seeded else None

    # 2. GET, with the ETag seen through the headers-inspection middleware.
    inspect = HeadersInspectionHandlerOption()
    got = await me.get(config(inspect=inspect))
    etag = header(inspect, "ETag")
    check("GET /me/security -> same object, ETag", got is not None and got.id == object_id and bool(etag),
          f"ETag {etag}")
    check("GET response carries request-id and OData-Version 4.0",
          bool(header(inspect, "request-id")) and header(inspect, "OData-Version") == "4.0")

    # 3. $select / $expand through the request configuration's query parameters.
    inspect = HeadersInspectionHandlerOption()
    selected = await me.get(config(select=["id"], inspect=inspect))
    check("GET ?$select=id -> id", selected is not None and selected.id == object_id
          and selected.information_protection is None)
    expanded = await me.get(config(expand=["informationProtection"]))
    check("GET ?$expand=informationProtection -> informationProtection entity",
          expanded is not None and expanded.information_protection is not None
          and bool(expanded.information_protection.id))
    await expect_error("GET ?$select=bogusProperty -> 400 invalidRequest",
                       me.get(config(select=["bogusProperty"])), 400, "invalidRequest")
    await expect_error("GET ?$expand=owner -> 400 invalidRequest",
                       me.get(config(expand=["owner"])), 400, "invalidRequest")

    # 4. /users/{id}/security: the caller's own object by id and by UPN.
    by_id = await client.users.by_user_id(user_id).security.get()
    check(f"GET /users/{user_id}/security -> the /me object", by_id is not None and by_id.id == object_id)
    by_upn = await client.users.by_user_id(upn).security.get()
    check(f"GET /users/{upn}/security -> the /me object", by_upn is not None and by_upn.id == object_id)
    patched = await client.users.by_user_id(user_id).security.patch(Security(odata_type=ODATA_TYPE))
    check("PATCH /users/{id}/security -> 200", patched is not None and patched.id == object_id)

    # 5. If-Match: stale, current, *.
    inspect = HeadersInspectionHandlerOption()
    await me.get(config(inspect=inspect))
    etag = header(inspect, "ETag")
    await expect_error('PATCH If-Match: "999999" (stale) -> 412 resourceModified',
                       me.patch(Security(odata_type=ODATA_TYPE), config(headers={"If-Match": '"999999"'})),
                       412, "resourceModified")
    await expect_error("PATCH If-Match: not-quoted -> 400 invalidRequest",
                       me.patch(Security(odata_type=ODATA_TYPE), config(headers={"If-Match": "999999"})),
                       400, "invalidRequest")
    # Graph's type has no writable property, so this PATCH changes nothing: a no-op answers
    # 200 with the ETag it had (nothing written), and that ETag stays current.
    inspect = HeadersInspectionHandlerOption()
    current = await me.patch(Security(odata_type=ODATA_TYPE), config(headers={"If-Match": etag}, inspect=inspect))
    same_etag = header(inspect, "ETag")
    check(f"PATCH If-Match: {etag} (current, changes nothing) -> 200, the same ETag",
          current is not None and same_etag == etag, f"ETag {same_etag}")
    again = await me.patch(Security(odata_type=ODATA_TYPE), config(headers={"If-Match": etag}))
    check(f"PATCH If-Match: {etag} again -> 200 (a no-op left it current)", again is not None)
    star = await me.patch(Security(odata_type=ODATA_TYPE), config(headers={"If-Match": "*"}))
    check("PATCH If-Match: * -> 200", star is not None)

    # 6. Prefer: return=minimal -> 204 (the SDK returns None), ETag and Preference-Applied.
    inspect = HeadersInspectionHandlerOption()
    minimal = await me.patch(Security(odata_type=ODATA_TYPE),
                             config(headers={"Prefer": "return=minimal"}, inspect=inspect))
    check("PATCH Prefer: return=minimal -> no body, ETag, Preference-Applied",
          minimal is None and bool(header(inspect, "ETag"))
          and header(inspect, "Preference-Applied") == "return=minimal",
          f"ETag {header(inspect, 'ETag')}")

    # 7. Error paths (README, Error codes).
    unknown = Security(odata_type=ODATA_TYPE)
    unknown.additional_data = {"displayName": "x"}
    await expect_error("PATCH unknown property displayName -> 400 invalidRequest",
                       me.patch(unknown), 400, "invalidRequest")
    await expect_error("PATCH @odata.type #microsoft.graph.user -> 400 invalidRequest",
                       me.patch(Security(odata_type="#microsoft.graph.user")), 400, "invalidRequest")
    other_id = Security(odata_type=ODATA_TYPE, id="not-the-id")
    await expect_error("PATCH a changed id (read-only) -> 400 invalidRequest",
                       me.patch(other_id), 400, "invalidRequest")
    # Over --max-body, five times, each after a GET on the client's kept-alive connection: every
    # 413 must reach the client, and so must the GET after it. A server that closes the
    # connection after its 413 must say `Connection: close`, and must not reset it while the body
    # is still arriving, or the client loses the answer (RFC 9112 §9.6): intermittent, by timing.
    big = Security(odata_type=ODATA_TYPE)
    big.additional_data = {"padding": "x" * (1024 * 1024 + 16)}
    seen = []
    for _ in range(5):
        step = "GET"
        try:
            await me.get()
            step = "PATCH"
            await me.patch(big)
            seen.append("PATCH 200")
        except ODataError as error:
            seen.append(f"{step} {error.response_status_code} {error.error.code if error.error else None}")
        except Exception as error:  # noqa: BLE001 - a transport error is what this looks for
            seen.append(f"{step} {type(error).__name__}")
    check("PATCH a body over --max-body (x5, kept-alive connection) -> 413 payloadTooLarge",
          all(s == "PATCH 413 payloadTooLarge" for s in seen), ", ".join(seen))
    await expect_error(f"GET /users/{OTHER_USER}/security (not an admin) -> 403 accessDenied",
                       client.users.by_user_id(OTHER_USER).security.get(), 403, "accessDenied")
    await expect_error("DELETE /me/security -> 405 notAllowed", me.delete(), 405, "notAllowed")
    await expect_error("GET /beta/nowhere -> 404 itemNotFound",
                       me.with_url(f"http://{addr}/beta/nowhere").get(), 404, "itemNotFound")
    bad_client, _ = make_client(addr, "not-a-jwt")
    await expect_error("GET with a malformed token -> 401 InvalidAuthenticationToken",
                       bad_client.users.by_user_id(user_id).security.get(), 401, "InvalidAuthenticationToken")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    forged_client, _ = make_client(addr, forged)
    await expect_error("GET with a bad signature -> 401 InvalidAuthenticationToken",
                       forged_client.users.by_user_id(user_id).security.get(), 401, "InvalidAuthenticationToken")

    # 8. JSON batching through msgraph-core's batch builder: two requests.
    builder = BatchRequestBuilder(adapter, {"XXX": ODataError})

    def batch(items):
        content = BatchRequestContent()
        for item in items:
            content.add_request(item.id, item)
        return content

    def items():
        patch_info = me.to_patch_request_information(Security(odata_type=ODATA_TYPE))
        get_info = client.users.by_user_id(user_id).security.to_get_request_information(
            config(select=["id"]))
        return [BatchRequestItem(patch_info, id="1"), BatchRequestItem(get_info, id="2")]

    # msgraph-core 1.5.2 keeps the absolute URL in a BatchRequestItem made from a
    # RequestInformation (msgraph-sdk-python-core#1116); Graph refuses absolute URLs, and so does
    # the server, as a whole-batch 400.
    absolute = items()
    await expect_error("POST /$batch with the SDK's absolute item URLs -> 400 invalidRequest",
                       builder.post(batch(absolute)), 400, "invalidRequest")
    def relative_items():
        relative = items()
        for item in relative:  # the workaround from msgraph-sdk-python#1015
            item.url = item.url.replace(adapter.base_url, "", 1)
        return relative

    relative = relative_items()
    content = batch(relative)
    urls = [item.url for item in relative]
    response = await builder.post(content)
    statuses = response.get_response_status_codes() if response else {}
    check("POST /$batch (PATCH /me/security, GET /users/{id}/security?$select=id) -> 200, 200",
          statuses == {"1": 200, "2": 200}, f"{statuses}, urls {urls}")
    if response is not None:
        ids = {(response.get_response_by_id(i).headers or {}).get("request-id") for i in ("1", "2")}
        check("each batch response has its own request-id", len(ids) == 2 and None not in ids)
        body = response.get_response_by_id("1").body
        print(f"INFO  {time.monotonic() - STARTED:6.2f}s  BatchResponseItem.body of a JSON-object body "
              f"is {body!r}: msgraph-core 1.5.2 reads it with get_bytes_value(), which kiota-"
              "serialization-json 1.16.0 answers None for a JSON object (kiota-python#737), so "
              "response_body() cannot deserialize; the bodies are checked from the raw response",
              flush=True)

    # The same batch through the SDK's request adapter, with the native response handler.
    info = await builder.to_post_request_information(batch(relative_items()))
    info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
    raw = await adapter.send_async(info, BatchResponseContent, {})
    document = raw.json() if raw is not None else {}
    bodies = {r.get("id"): r.get("body") or {} for r in document.get("responses", [])}
    check("batch bodies: the object (PATCH) and {@odata.type, id} ($select=id), same id",
          bodies.get("1", {}).get("id") == object_id and bodies.get("2", {}).get("id") == object_id
          and bodies.get("2", {}).get("@odata.type") == ODATA_TYPE
          and "(id)" in bodies.get("2", {}).get("@odata.context", ""),
          f"status {getattr(raw, 'status_code', None)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="HOST:PORT the server listens on")
    parser.add_argument("--token", required=True, help="bearer token (the dev token)")
    parser.add_argument("--user-id", default=DEV_USER, help="the token's user object id")
    parser.add_argument("--upn", default=DEV_UPN, help="the token's user principal name")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        asyncio.run(run(args.addr, args.token, args.user_id, args.upn))
    except Exception as error:  # noqa: BLE001 - an unexpected exception is a failure
        check("no unexpected exception", False, f"{type(error).__name__}: {error}")
    failed = results.count(False)
    elapsed = time.monotonic() - started
    print(f"sdk_check: {len(results) - failed} passed, {failed} failed in {elapsed:.2f}s")
    sys.exit(1 if failed or not results else 0)


if __name__ == "__main__":
    main()
