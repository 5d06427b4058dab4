-- wrk script: the bench PATCH (the body of benches/support), with the token from $TOKEN.
-- Every request carries a revision no other request carried (thread id and a counter), so
-- each one really changes the object: the server's no-op detection never stands in for a
-- write.
local template = '{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account, revision %s-%d","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "bench-token-0123456789abcdef")

local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, tostring(id or 0), counter))
end

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  for status, count in pairs(statuses) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
