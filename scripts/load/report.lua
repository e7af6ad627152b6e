-- Shared by the wrk scripts: one line a script can parse.
-- RESULT <requests/s> <p50 µs> <p95 µs> <p99 µs> <non-2xx> <socket errors>
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
