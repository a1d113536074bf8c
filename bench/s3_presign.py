#!/usr/bin/env python3
"""Presigns one S3 request, path-style (AWS Signature V4 in the query string, UNSIGNED-PAYLOAD),
with the standard library only: the reference URLs of bench/s3.sh, signed independently of the
node's own signer.

Usage: s3_presign.py METHOD ENDPOINT BUCKET KEY TTL_SECS    (env S3_REGION, S3_ACCESS_KEY,
       S3_SECRET_KEY)
       s3_presign.py --self-test    (AWS's documented presigned-URL example)
"""
import datetime
import hashlib
import hmac
import os
import sys
import urllib.parse


def q(s, safe="-_.~"):
    return urllib.parse.quote(s, safe=safe)


def sign(method, scheme, host, path, ttl, region, access, secret, now):
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    params = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access}/{scope}",
              "X-Amz-Date": stamp, "X-Amz-Expires": str(ttl), "X-Amz-SignedHeaders": "host"}
    query = "&".join(f"{q(k)}={q(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join([method, path, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"])
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, digest])
    key = ("AWS4" + secret).encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{path}?{query}&X-Amz-Signature={signature}"


def self_test():
    # docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html, "An example".
    now = datetime.datetime(2013, 5, 24, tzinfo=datetime.timezone.utc)
    url = sign("GET", "https", "examplebucket.s3.amazonaws.com", "/test.txt", 86400, "us-east-1",
               "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", now)
    want = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    assert url.endswith("X-Amz-Signature=" + want), url
    print("ok")


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    method, endpoint, bucket, key, ttl = sys.argv[1:6]
    u = urllib.parse.urlsplit(endpoint)
    path = f"/{q(bucket)}/{q(key, safe='/-_.~')}"
    now = datetime.datetime.now(datetime.timezone.utc)
    print(sign(method, u.scheme, u.netloc, path, int(ttl), os.environ["S3_REGION"],
               os.environ["S3_ACCESS_KEY"], os.environ["S3_SECRET_KEY"], now))


if __name__ == "__main__":
    main()
