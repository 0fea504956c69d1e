-- Mixed load for the soak: hits, the list, misses over a wide id range, PUT/DELETE that
-- invalidate, POSTs, and a few bad requests. Counts 5xx answers (wrk counts 4xx and 5xx
-- together as non-2xx; 404 and 422 are expected here).
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(id * 7919 + os.time())
  s5xx = 0
  n = 0
end

local body_user = '{"name":"soak%d","email":"soak%d@example.com"}'

function request()
  n = n + 1
  local r = math.random(1000)
  if r <= 550 then      -- hot hits: 100 seeded users
    return wrk.format("GET", "/users/" .. math.random(100))
  elseif r <= 700 then  -- misses over a wide range (cached "not found")
    return wrk.format("GET", "/users/" .. math.random(1000000, 100000000))
  elseif r <= 800 then  -- the list
    return wrk.format("GET", "/users/")
  elseif r <= 900 then  -- updates: invalidate user_<id> and users_all
    local i = math.random(100)
    return wrk.format("PUT", "/users/" .. i, {["Content-Type"] = "application/json"},
                      string.format(body_user, i, i))
  elseif r <= 930 then  -- deletes of ids that do not exist (a 404 and no invalidation)
    return wrk.format("DELETE", "/users/" .. math.random(200000, 300000))
  elseif r <= 960 then  -- bad requests: 422
    if r % 2 == 0 then
      return wrk.format("GET", "/users/x" .. r)
    end
    return wrk.format("PUT", "/users/5", {["Content-Type"] = "application/json"}, "{oops")
  else                  -- metrics and health
    if r % 2 == 0 then return wrk.format("GET", "/metrics") end
    return wrk.format("GET", "/healthz")
  end
end

function response(status, headers, body)
  if status >= 500 then s5xx = s5xx + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("s5xx") or 0) end
  io.write(string.format("soak_5xx %d\n", total))
end
