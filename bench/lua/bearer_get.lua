-- GET with "Authorization: Bearer BENCH_TOKEN" (keymint bench: GET /api/v1/me).
-- Env: BENCH_LUA_DIR, BENCH_TOKEN, BENCH_EXPECT.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
