-- wrk script for POST /classify (loadtest/wrk-throughput.ts). The bodies are prepared by the
-- caller, one JSON body per line in a file named after `--`:
--   wrk -t1 -c32 -d15s -s loadtest/wrk/classify.lua http://127.0.0.1:PORT -- bodies.jsonl
-- Each connection sends them in rotation, from its own offset, so connections do not all send
-- the same text at once. `done` prints one line "WRK_JSON {...}" with the counts and latency
-- percentiles (microseconds) for the caller to parse.
local bodies = {}
local next_index = 1
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("offset", thread_count * 7919)
end

function init(args)
  local path = args[1]
  if path == nil then error("classify.lua: pass the bodies file after --") end
  for line in io.lines(path) do
    if line ~= "" then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("classify.lua: no bodies in " .. path) end
  next_index = ((offset or 0) % #bodies) + 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[next_index]
  next_index = next_index % #bodies + 1
  return wrk.format(nil, "/classify", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = function(q) return latency:percentile(q) end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyUs":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, p(50), p(90), p(99), p(99.9)))
end
