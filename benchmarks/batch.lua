-- wrk script: POST /events/batch with 100 events of about 110 bytes each, every id used once (thread number,
-- random salt, request counter, item index).
local thread_count = 0
local batch_size = 100

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  salt = math.random(1, 1000000000)
  counter = 0
end

function request()
  counter = counter + 1
  local items = {}
  for i = 1, batch_size do
    items[i] = string.format(
      '{"event_id":"batch-%d-%d-%d-%03d","payload":{"order":%d,"note":"benchmark batch item, 110 bytes"}}',
      thread_number or 0, salt, counter, i, counter
    )
  end
  local body = '{"events":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/events/batch", {["Content-Type"] = "application/json"}, body)
end
