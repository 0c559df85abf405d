-- POST a fixed form body with client_secret_basic (keymint bench: garbage introspection,
-- garbage revocation). Reuses bench-peers' common.lua (status + body check, RESULT line).
-- Env: BENCH_LUA_DIR (bench-peers/lua), BENCH_BASIC = base64("client_id:secret"),
--      BENCH_BODY = the urlencoded body, BENCH_EXPECT = Lua pattern a 200 body must contain.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
