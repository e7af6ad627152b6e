-- wrk script: POST /orders with the README's body and a bearer token from
-- $TOKEN; prints one machine-readable RESULT line when done.
wrk.method = "POST"
wrk.body = '{"userId": 1, "items": [{"productId": "p-1", "quantity": 2, "unitPrice": 9.99}]}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

dofile(os.getenv("LOAD_DIR") .. "/report.lua")
