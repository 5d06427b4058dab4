#!/usr/bin/env python3
"""A few requests of every kind the server answers besides the PATCH that wrk sends, for
scripts/pgo_build.sh's training run: reads, `$select`, refusals (no token, bad JSON, wrong
content type, a read-only property, a stale `If-Match`), a conditional write, a `$batch`, the
probes. Each kind is sent a few hundred times so that the profile does not lay its code out
as never run. Every answer's status is checked: a training run that goes wrong stops the build.

Usage: scripts/pgo_requests.py ADDRESS TOKEN
"""
import http.client
import json
import sys

ROUNDS = 200


def main(address, token):
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    bearer = {"Authorization": "Bearer " + token}
    patch_headers = dict(bearer, **{"Content-Type": "application/json"})

    def send(method, path, status, body=None, headers=None):
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.status != status:
            raise SystemExit(f"{method} {path}: {response.status}, expected {status}: {data!r}")
        return response, data

    batch = json.dumps({"requests": [
        {"id": "1", "method": "PATCH", "url": "/me/security",
         "headers": {"Content-Type": "application/json"}, "body": {"notes": "from a batch"}},
        {"id": "2", "method": "GET", "url": "/me/security?$select=id", "dependsOn": ["1"]},
    ]})
    for revision in range(ROUNDS):
        response, _ = send("GET", "/beta/me/security", 200, headers=bearer)
        etag = response.getheader("ETag")
        send("GET", "/beta/me/security?$select=notes", 200, headers=bearer)
        send("PATCH", "/beta/me/security", 200, json.dumps({"notes": f"conditional {revision}"}),
             dict(patch_headers, **{"If-Match": etag}))
        send("PATCH", "/beta/me/security", 412, json.dumps({"notes": "stale"}),
             dict(patch_headers, **{"If-Match": etag}))
        send("PATCH", "/beta/me/security", 401, "{}", {"Content-Type": "application/json"})
        send("PATCH", "/beta/me/security", 400, "{not json", patch_headers)
        send("PATCH", "/beta/me/security", 415, "{}",
             dict(bearer, **{"Content-Type": "text/plain"}))
        send("PATCH", "/beta/me/security", 400, json.dumps({"id": "other"}), patch_headers)
        send("POST", "/beta/$batch", 200, batch, patch_headers)
        send("GET", "/healthz", 200)
        send("GET", "/readyz", 200)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
