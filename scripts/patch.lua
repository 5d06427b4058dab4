-- wrk script: the bench PATCH (the body of benches/support), with the token from $TOKEN.
-- Every request carries a revision no other request carried (thread id and a counter), so
-- each one really changes the object: the server's no-op detection never stands in for a
-- write.
local template = '{"riskProfile":{"level":"medium","score":42,"reasons":["mfa-missing","legacy-auth"],"reviewedBy":null},"notes":"quarterly review of sign-in risk for this account, revision %s-%d","lastReviewed":"2026-11-29T01:02:03Z","obsolete":null}'
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "bench-token-0123456789abcdef")

-- `response` runs in each thread's Lua state and `done` in the main one: the threads are kept
-- here so that `done` can read each one's counts.
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, tostring(id or 0), counter))
end

statuses = {}
response = function(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

done = function(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + count
    end
  end
  for status, count in pairs(total) do
    io.write(string.format("status %s: %d\n", status, count))
  end
end
