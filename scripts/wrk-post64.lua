-- wrk script of scripts/bench-gateway.sh: POST a 64-byte body.
wrk.method = "POST"
wrk.body = string.rep("x", 64)
wrk.headers["Content-Type"] = "application/octet-stream"
