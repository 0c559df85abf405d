-- POST "BENCH_PARAM=<token>&token_type_hint=access_token" with client_secret_basic, the
-- token taken from BENCH_TOKEN_FILE (one per line): in file order (BENCH_ORDER=seq, for
-- revoking tokens that are still live: each is presented once until the file runs out,
-- then it wraps around to already revoked ones) or at random (BENCH_ORDER=random, for
-- introspecting tokens spread over a big table). Env as form_post.lua plus those.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local param = os.getenv("BENCH_PARAM") or "token"
local order = os.getenv("BENCH_ORDER") or "seq"
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKEN_FILE")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
assert(#tokens > 0, "BENCH_TOKEN_FILE is empty")
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")

function init(args)
  math.randomseed(os.time())
end

function request()
  local t
  if order == "random" then
    t = tokens[math.random(#tokens)]
  else
    i = i + 1
    t = tokens[((i - 1) % #tokens) + 1]
  end
  return wrk.format(nil, nil, nil, param .. "=" .. t .. "&token_type_hint=access_token")
end
