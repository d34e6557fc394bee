-- wrk script for the suite: XML-RPC POSTs to /RPC2 over keep-alive.
-- BENCH_METHOD: GetProgress (default), GetJob or CreateJob.
-- BENCH_JOBS:   how many seeded JobIDs to cycle (bench-0000 ...), default 1000.
-- BENCH_AUDIO:  the FileID CreateJob's EncoderJob details name.
-- done() prints one JSON line (prefixed "BENCH ") that bench/bench.py reads.

local method = os.getenv("BENCH_METHOD") or "GetProgress"
local jobs = tonumber(os.getenv("BENCH_JOBS") or "1000")
local audio = os.getenv("BENCH_AUDIO") or ""
local headers = { ["Content-Type"] = "text/xml" }
local n = 0

local function param(s)
   return "<param><value><string>" .. s .. "</string></value></param>"
end

local function call(name, params)
   return '<?xml version="1.0"?>\n<methodCall><methodName>' .. name ..
      "</methodName><params>" .. table.concat(params) .. "</params></methodCall>\n"
end

-- CreateJob is the same body every time: an empty JobID gets a fresh UUID.
local create = call("CreateJob", {
   param(""), param("EncoderJob"),
   param("&lt;EncoderJob&gt;&lt;AudioFile&gt;" .. audio ..
         "&lt;/AudioFile&gt;&lt;Format&gt;mp4&lt;/Format&gt;&lt;/EncoderJob&gt;"),
   param("") })

function init(args)
   -- Each thread starts at a different place in the ID cycle.
   n = math.random(0, jobs - 1)
end

function request()
   if method == "CreateJob" then
      return wrk.format("POST", "/RPC2", headers, create)
   end
   n = (n + 1) % jobs
   return wrk.format("POST", "/RPC2", headers,
                     call(method, { param(string.format("bench-%04d", n)) }))
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
      '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, ' ..
      '"mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
