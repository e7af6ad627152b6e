-- wrk script piece: spreads wrk's threads (and so their connections) over
-- the addresses in $TARGETS ("127.0.0.1:4101 127.0.0.1:4111"), one after
-- the other, as a round-robin load balancer would spread connections.
-- Loaded by a request script before report.lua; wrk's latency statistics
-- are merged over every thread, so p99 covers all targets.
local targets = {}
for t in string.gmatch(os.getenv("TARGETS") or "", "%S+") do
  table.insert(targets, t)
end
local next_target = 0

function setup(thread)
  if #targets == 0 then return end
  local host, port = targets[next_target % #targets + 1]:match("^(.+):(%d+)$")
  next_target = next_target + 1
  thread.addr = wrk.lookup(host, port)[1]
end
