-- wrk script: POST /orders (as post_order.lua) with wrk's threads spread
-- over the replicas in $TARGETS (round_robin.lua).
dofile(os.getenv("LOAD_DIR") .. "/round_robin.lua")
dofile(os.getenv("LOAD_DIR") .. "/post_order.lua")
