-- wrk script: POST /orders for a user the order service has never seen, so
-- it holds no copy to fall back on: with the user service's breaker open,
-- each order is refused 503 at once. Bearer token from $TOKEN.
wrk.method = "POST"
wrk.body = '{"userId": 424242, "items": [{"productId": "p-1", "quantity": 1, "unitPrice": 5}]}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

dofile(os.getenv("LOAD_DIR") .. "/report.lua")
