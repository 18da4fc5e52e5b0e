"""Drives imgedge's CDN API with the official RPC SDK (aliyun-python-sdk-core +
aliyun-python-sdk-cdn, HMAC-SHA1 signature v1) and prints one JSON object of results.

Usage: cdn_sdk_rpc.py HOST:PORT KEY_ID SECRET REFRESH_URL PUSH_URL
"""
import json
import sys
import time
import urllib.error
import urllib.request

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcdn.request.v20180510.DescribeRefreshQuotaRequest import DescribeRefreshQuotaRequest
from aliyunsdkcdn.request.v20180510.DescribeRefreshTaskByIdRequest import DescribeRefreshTaskByIdRequest
from aliyunsdkcdn.request.v20180510.DescribeRefreshTasksRequest import DescribeRefreshTasksRequest
from aliyunsdkcdn.request.v20180510.PushObjectCacheRequest import PushObjectCacheRequest
from aliyunsdkcdn.request.v20180510.RefreshObjectCachesRequest import RefreshObjectCachesRequest

endpoint, key_id, secret, refresh_url, push_url = sys.argv[1:6]
REGION = "cn-hangzhou"


def prepare(req):
    req.set_endpoint(endpoint)
    req.set_protocol_type("http")
    req.set_accept_format("JSON")
    return req


def call(client, req):
    try:
        return {"ok": json.loads(client.do_action_with_exception(prepare(req)))}
    except ServerException as e:
        return {"status": e.get_http_status(), "code": e.get_error_code(), "message": e.get_error_msg()}


def raw(method, url):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return {"status": r.status, "body": json.loads(r.read())}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": json.loads(e.read())}


client = AcsClient(key_id, secret, REGION, auto_retry=False)
out = {}

req = RefreshObjectCachesRequest()
req.set_ObjectPath(refresh_url)
req.set_ObjectType("File")
out["refresh"] = call(client, req)

req = PushObjectCacheRequest()
req.set_ObjectPath(push_url)
out["push"] = call(client, req)
push_id = out["push"].get("ok", {}).get("PushTaskId", "")

# The prefetch runs in the background: poll until it is done (bounded).
for _ in range(100):
    req = DescribeRefreshTaskByIdRequest()
    req.set_TaskId(push_id)
    out["push_task"] = call(client, req)
    tasks = out["push_task"].get("ok", {}).get("Tasks", [])
    if tasks and all(t["Status"] in ("Complete", "Failed") for t in tasks):
        break
    time.sleep(0.1)

req = DescribeRefreshTasksRequest()
req.set_TaskId(out["refresh"].get("ok", {}).get("RefreshTaskId", ""))
out["tasks"] = call(client, req)

req = DescribeRefreshTasksRequest()
req.set_ObjectType("preload")
req.set_PageSize(50)
out["preload_tasks"] = call(client, req)

out["quota"] = call(client, DescribeRefreshQuotaRequest())

out["wrong_secret"] = call(AcsClient(key_id, secret + "x", REGION, auto_retry=False), DescribeRefreshQuotaRequest())
out["unknown_key"] = call(AcsClient("nobody", secret, REGION, auto_retry=False), DescribeRefreshQuotaRequest())

# One signed GET URL sent twice: the second is a replayed nonce.
req = prepare(DescribeRefreshQuotaRequest())
req.set_method("GET")
signed = "http://" + endpoint + req.get_url(REGION, key_id, secret)
out["first_send"] = raw("GET", signed)
out["replay"] = raw("GET", signed)

print(json.dumps(out))
