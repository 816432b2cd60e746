-- wrk script for load-check.sh: every request places the same small order (one USB-C cable for
-- customer 1) as JSON, on whatever path the URL names (/orders or /baseline/orders).
wrk.method = "POST"
wrk.body = '{"customerId": 1, "lines": [{"sku": "cable", "quantity": 1}]}'
wrk.headers["Content-Type"] = "application/json"
