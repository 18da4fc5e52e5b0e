"""Fetches one object through the oss2 SDK, as a customer's code would.

Usage: oss2_get.py PROXY ENDPOINT KEY OUT_DIR

oss2 with an IP or `localhost` endpoint always uses path-style URLs (`/bucket/key`),
so the test gives a CNAME endpoint (`http://imgedge.test`, is_cname=True) and sends
the requests to imgedge as an HTTP proxy: imgedge then sees what a CNAME'd
production request carries (the key with every `/` escaped as `%2F`, Host
`imgedge.test`). Writes OUT_DIR/plain and OUT_DIR/processed (image/resize,w_50).
"""

import os
import sys

import oss2

proxy, endpoint, key, out = sys.argv[1:5]
bucket = oss2.Bucket(
    oss2.AnonymousAuth(), endpoint, "bucket", is_cname=True, proxies={"http": proxy, "https": proxy}
)
with open(os.path.join(out, "plain"), "wb") as f:
    f.write(bucket.get_object(key).read())
with open(os.path.join(out, "processed"), "wb") as f:
    f.write(bucket.get_object(key, process="image/resize,w_50").read())
