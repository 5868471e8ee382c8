-- wrk script of the benchmarks: sends the body in the file named by WRK_BODY as a POST (a plain
-- GET when unset), of the type in WRK_CONTENT_TYPE (application/json when unset), and prints one
-- parseable line when the run is done:
--   WRK_RESULT {"requests": ..., "duration_us": ..., "non2xx": ..., "p50_us": ..., ...}
local body_path = os.getenv("WRK_BODY")
if body_path and body_path ~= "" then
  local file = assert(io.open(body_path, "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  local content_type = os.getenv("WRK_CONTENT_TYPE")
  if not content_type or content_type == "" then
    content_type = "application/json"
  end
  wrk.headers["Content-Type"] = content_type
  file:close()
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, "connect": %d, '
      .. '"read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect,
    errors.read, errors.write, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
