-- wrk script: GET /users/1 with a bearer token from $TOKEN.
wrk.method = "GET"
local token = os.getenv("TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

dofile(os.getenv("LOAD_DIR") .. "/report.lua")
