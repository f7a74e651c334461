-- wrk -s bench/wrk_check.lua: a unique tag per request, and each 200 answer checked to carry its own
-- request's tag back from the database ("tag", read from the row, equal to "sent", read from the URL).
-- Prints the same machine-readable line as wrk_report.lua, plus the wrong rows.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrong = 0
  sent = 0
end

function request()
  sent = sent + 1
  return wrk.format("GET", "/echo?tag=t" .. id .. "x" .. sent)
end

function response(status, headers, body)
  if status == 200 then
    local tag = body:match('"tag": "([^"]*)"')
    local asked = body:match('"sent": "([^"]*)"')
    if tag == nil or tag ~= asked then
      wrong = wrong + 1
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("wrong")
  end
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, "wrong": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, total))
end
