-- wrk script: POST /events with an id no other request uses (thread number, counter, random salt).
local thread_count = 0

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  -- LuaJIT seeds its generator with a fixed value: without this, a second run against the same server
  -- would send the first run's ids again (and measure 409s)
  math.randomseed(os.time() * 100 + (thread_number or 0))
  salt = math.random(1, 1000000000)
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"event_id":"bench-%d-%d-%d","payload":{"order":%d,"note":"benchmark"}}',
    thread_number or 0, salt, counter, counter
  )
  return wrk.format("POST", "/events", {["Content-Type"] = "application/json"}, body)
end
