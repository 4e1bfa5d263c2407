-- wrk script: POST one chat completion for MODEL; prints one machine-readable RESULT line.
local model = os.getenv("MODEL") or "bench"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("AUTH") or "sk-bench")
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"What is the capital of France?"}]}'
local bad = 0
response = function(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f errors=%d non200=%d n=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, e.connect + e.read + e.write + e.status + e.timeout, bad, summary.requests))
end
