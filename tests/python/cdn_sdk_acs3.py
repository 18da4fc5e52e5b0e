"""Drives imgedge's CDN API with the official Tea SDK (alibabacloud-cdn20180510 on
alibabacloud-tea-openapi, ACS3-HMAC-SHA256 signatures) and prints one JSON object.

Usage: cdn_sdk_acs3.py HOST:PORT KEY_ID SECRET REFRESH_URL PUSH_URL
"""
import json
import sys
import time

from alibabacloud_cdn20180510 import models
from alibabacloud_cdn20180510.client import Client
from alibabacloud_tea_openapi.utils_models import Config

endpoint, key_id, secret, refresh_url, push_url = sys.argv[1:6]


def client_for(key, sec):
    return Client(Config(access_key_id=key, access_key_secret=sec, endpoint=endpoint, protocol="http"))


def call(fn, req):
    try:
        return {"ok": fn(req).body.to_map()}
    except Exception as e:  # the SDK's ClientException / ServerException
        return {"status": getattr(e, "status_code", None), "code": getattr(e, "code", None), "message": str(e)}


client = client_for(key_id, secret)
out = {}
out["refresh"] = call(client.refresh_object_caches,
                      models.RefreshObjectCachesRequest(object_path=refresh_url, object_type="File"))
out["push"] = call(client.push_object_cache, models.PushObjectCacheRequest(object_path=push_url))
push_id = out["push"].get("ok", {}).get("PushTaskId", "")

for _ in range(100):
    out["push_task"] = call(client.describe_refresh_task_by_id, models.DescribeRefreshTaskByIdRequest(task_id=push_id))
    tasks = out["push_task"].get("ok", {}).get("Tasks", [])
    if tasks and all(t["Status"] in ("Complete", "Failed") for t in tasks):
        break
    time.sleep(0.1)

out["tasks"] = call(client.describe_refresh_tasks,
                    models.DescribeRefreshTasksRequest(task_id=out["refresh"].get("ok", {}).get("RefreshTaskId", "")))
out["quota"] = call(client.describe_refresh_quota, models.DescribeRefreshQuotaRequest())
out["wrong_secret"] = call(client_for(key_id, secret + "x").describe_refresh_quota, models.DescribeRefreshQuotaRequest())
out["unknown_key"] = call(client_for("nobody", secret).describe_refresh_quota, models.DescribeRefreshQuotaRequest())
print(json.dumps(out))
