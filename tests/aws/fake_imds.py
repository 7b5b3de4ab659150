#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Loopback stand-ins for the AWS credential endpoints and for misbehaving
KMS servers, used by test-aws-kms.py.  Nothing here leaves 127.0.0.1.

  imds       EC2 instance metadata, IMDSv2 only: PUT /latest/api/token, then
             GETs must carry X-aws-ec2-metadata-token
  container  ECS-style endpoint: GET /creds with an Authorization header; the
             credentials expire EXPIRES_IN seconds from now
  slow       answers every request after SLEEP seconds
  throttle   answers every request with 400 ThrottlingException
  truncate   promises a body of 200 bytes, sends 20 and closes the connection
  error      answers every request with the AWS error body of ETYPE (status STATUS);
             with IN_HEADER, ETYPE goes in an X-Amzn-ErrorType header instead;
             with DESCRIBE_STATE, a DescribeKey gets a key in that KeyState instead
             (a list "A,B": A for the first DescribeKey, B for the others),
             and with DESCRIBE_ETYPE, the error body of that type; a DescribeKey
             is answered after DESCRIBE_SLEEP seconds
  skew       a KMS whose clock is SKEW seconds off ours: the first FAIL requests get
             ETYPE with MESSAGE and a Date header of its clock, the others a
             DescribeKey answer; each request's X-Amz-Date is in the log
"""
import json
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "imds-session-token-1"
ROLE = "kmscrypt-role"


def creds_body(key_id, expires_in=3600):
    exp = (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key_id,
                       "SecretAccessKey": "fake-secret-" + key_id, "Token": "fake-session-token",
                       "Expiration": exp}).encode()


class Handler(BaseHTTPRequestHandler):
    mode = "imds"
    sleep = 5.0
    log = []
    auth = "container-auth-token"
    etype = "DisabledException"
    status = 400
    in_header = False
    skew = 3600
    fail = 1
    expires_in = 3600
    key_state = "Enabled"
    describe_state = None
    describe_etype = None
    describe_sleep = 0
    message = "Signature expired: 20240101T000000Z is now earlier than 20240101T010000Z (20240101T010500Z - 5 min.)"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="text/plain", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the client timed out first: that is what the slow mode tests

    def record(self):
        type(self).log.append((self.command, self.path, dict(self.headers)))

    def do_PUT(self):
        self.record()
        if self.mode == "imds" and self.path == "/latest/api/token" and \
                self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, TOKEN.encode())
        self.reply(403, b"forbidden")

    def do_GET(self):
        self.record()
        if self.mode == "imds":
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                return self.reply(401, b"IMDSv2 token required")
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                return self.reply(200, ROLE.encode())
            if self.path == base + ROLE:
                return self.reply(200, creds_body("ASIAIMDSEXAMPLE"), "application/json")
            return self.reply(404, b"not found")
        if self.mode == "container":
            if self.headers.get("Authorization") != self.auth:
                return self.reply(403, b"bad authorization")
            return self.reply(200, creds_body("ASIACONTAINEREXAMPLE", self.expires_in), "application/json")
        self.reply(404, b"not found")

    def do_POST(self):
        self.record()
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if self.mode == "slow":
            time.sleep(self.sleep)
            return self.reply(200, b"{}", "application/x-amz-json-1.1")
        if self.mode == "error":
            describe = self.headers.get("X-Amz-Target") == "TrentService.DescribeKey"
            if describe:
                time.sleep(self.describe_sleep)
            if describe and self.describe_state:
                states = self.describe_state.split(",")
                n = sum(h.get("X-Amz-Target") == "TrentService.DescribeKey" for _, _, h in self.log)
                return self.key_metadata(states[min(n, len(states)) - 1])
            etype = self.describe_etype if describe and self.describe_etype else self.etype
            body = {"message": "replayed " + etype}
            headers = [("x-amzn-RequestId", "err-req-%d" % len(self.log))]
            if self.in_header:
                headers.append(("X-Amzn-ErrorType", etype))
            else:
                body["__type"] = etype
            return self.reply(self.status, json.dumps(body).encode(), "application/x-amz-json-1.1", headers)
        if self.mode == "skew":
            return self.skewed()
        if self.mode == "truncate":
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", "200")
            self.end_headers()
            self.wfile.write(b'{"KeyMetadata": {"Ar')
            self.wfile.flush()
            self.close_connection = True
            return
        if self.mode == "state":
            # DescribeKey of a key in a state moto does not make (custom key stores, imports, replicas).
            return self.key_metadata(self.key_state)
        if self.mode == "throttle":
            return self.reply(400, b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
                              "application/x-amz-json-1.1", [("x-amzn-RequestId", "throttle-req-%d" % len(self.log))])
        self.reply(404, b"not found")


    SKEW_KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def key_metadata(self, state):
        """A DescribeKey answer for a key in state."""
        body = {"KeyMetadata": {"Arn": self.SKEW_KEY, "KeyId": self.SKEW_KEY.split("/")[-1], "KeyState": state}}
        return self.reply(200, json.dumps(body).encode(), "application/x-amz-json-1.1",
                          [("x-amzn-RequestId", "state-req-%d" % len(self.log))])

    def skewed(self):
        """The answer of a KMS whose clock is self.skew seconds off, with its own Date header."""
        self.send_response_only(400 if len(self.log) <= self.fail else 200)
        self.send_header("Date", self.date_time_string(time.time() + self.skew))
        if len(self.log) <= self.fail:
            body = json.dumps({"__type": self.etype, "message": self.message}).encode()
        else:
            body = json.dumps({"KeyMetadata": {"Arn": self.SKEW_KEY, "KeyId": self.SKEW_KEY.split("/")[-1],
                                               "KeyState": "Enabled"}}).encode()
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", "skew-req-%d" % len(self.log))
        self.end_headers()
        self.wfile.write(body)


def start(mode, **kw):
    """Serve in a thread on a free loopback port; returns (server, port)."""
    handler = type("H", (Handler,), dict(mode=mode, log=[], **kw))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_address[1]


if __name__ == "__main__":
    srv, port = start(sys.argv[1] if len(sys.argv) > 1 else "imds")
    print(port, flush=True)
    threading.Event().wait()
