-- GET load for `clientele bench`, run by wrk with as many threads as connections (one
-- connection per thread, so each thread's callbacks see one request at a time).
--
-- Environment: BENCH_PATHS (a file, one request path a line, picked at random per request),
-- BENCH_TOKEN (the bearer key), BENCH_RATE (requests/s over all threads; 0 = closed loop),
-- BENCH_THREADS (wrk's -t). At a fixed rate each connection follows its own schedule and a
-- latency counts from the request's scheduled time whenever the request left late (no
-- coordinated omission, as wrk2 measures). done() prints one line: "WRK-RESULT {json}".
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *t);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
local all = {}

function setup(thread)
  thread:set("number", #all)
  table.insert(all, thread)
end

local paths, interval, next_at, sent, scheduled = {}, 0, nil, 0, 0
latencies, failures = {}, 0

function init(args)
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    table.insert(paths, line)
  end
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
  math.randomseed(number * 7919 + 17)
  if rate > 0 then
    interval = 1e6 * threads / rate
    next_at = now_us() + interval * number / threads -- threads staggered over one interval
  end
end

if rate > 0 then
  function delay()
    return math.max(0, math.floor((next_at - now_us()) / 1e3))
  end
end

function request()
  sent = now_us()
  if rate > 0 then
    scheduled = next_at
    next_at = next_at + interval
  else
    scheduled = sent
  end
  return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
  if status >= 400 then
    failures = failures + 1
  else
    table.insert(latencies, now_us() - math.min(sent, scheduled))
  end
end

function done(summary, latency, requests)
  local parts, failed = {}, 0
  for _, thread in ipairs(all) do
    failed = failed + thread:get("failures")
    for _, value in ipairs(thread:get("latencies")) do
      table.insert(parts, string.format("%.1f", value))
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "duration_us": %d, "failures": %d, "socket_errors": %d, "latencies_us": [%s]}\n',
    summary.requests, summary.duration, failed,
    errors.connect + errors.read + errors.write + errors.timeout, table.concat(parts, ",")))
end
