-- wrk script: the bench PATCH (same body as benches/support), with the token from $TOKEN.
wrk.method = "PATCH"
wrk.body = '{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "bench-token-0123456789abcdef")

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  for status, count in pairs(statuses) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
