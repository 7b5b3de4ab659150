#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Host tests of the aws KMS provider against a real AWS KMS implementation
(moto in server mode) on 127.0.0.1, through tests/aws/aws-driver (which
goes through kc_kms_*, so the audit record is checked too).

Skips (77) when moto or boto3 cannot be imported; install them with
`pip install 'moto[server]'`.  All traffic stays on loopback.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

def unavailable():
    """Exit status when moto cannot run: a skip, or with KC_REQUIRE_AWS=1 (CI) a hard error."""
    if os.environ.get("KC_REQUIRE_AWS") == "1":
        print("ERROR: KC_REQUIRE_AWS=1: the aws provider must be tested against moto here")
        return 99
    return 77


try:
    import boto3
    import moto  # noqa: F401  (the server comes with it)
except ImportError as e:
    print("SKIP: moto/boto3 not installed (%s): pip install 'moto[server]'" % e)
    sys.exit(unavailable())

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_imds  # noqa: E402

BUILD = os.environ.get("top_builddir") or os.path.abspath(os.path.join(HERE, "..", "..", "build"))
DRIVER = os.path.join(BUILD, "tests", "aws", "aws-driver")
REGION = "eu-west-1"
CTX = "db-id=db-1,volume-id=vol-1"

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - %s" % name)
    else:
        failed += 1
        print("not ok - %s %s" % (name, detail))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_moto(port, logdir):
    log = open(os.path.join(logdir, "moto.log"), "w")
    p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    for _ in range(100):
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/moto-api/" % port, timeout=1)
            return p
        except Exception:
            if p.poll() is not None:
                break
            time.sleep(0.1)
    p.kill()
    print("SKIP: moto_server did not start")
    sys.exit(unavailable())


class Proxy:
    """TCP forwarder 127.0.0.1:port -> moto, so 'the server' can go down and come back with its keys."""

    def __init__(self, port, target):
        self.port, self.target, self.sock = port, target, None

    def up(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self.accept, args=(self.sock,), daemon=True).start()

    def down(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def accept(self, lsock):
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            c = self.wrap(c)
            if c is None:
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pipe, args=(c, u, self.client_sent), daemon=True).start()
            threading.Thread(target=self.pipe, args=(u, c, None), daemon=True).start()

    def wrap(self, c):
        """The client's connection as the forwarder speaks it (None: dropped)."""
        return c

    def client_sent(self, data):
        """What a client sent, chunk by chunk; a plain forwarder keeps nothing."""

    @staticmethod
    def pipe(a, b, seen):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if seen:
                    seen(d)
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Recorder(Proxy):
    """The forwarder, keeping what clients sent: over http the requests, headers in the clear."""

    def __init__(self, target):
        super().__init__(free_port(), target)
        self.sent = []
        self.up()

    def client_sent(self, data):
        self.sent.append(data)

    def signed_with(self, key_id, token=None):
        """Whether a request was signed with key_id (and, given token, carried it as the session token)."""
        text = b"".join(self.sent).decode("latin-1").lower()
        ok = ("credential=%s/" % key_id.lower()) in text
        return ok and (token is None or ("x-amz-security-token: %s\r\n" % token.lower()) in text)

    def url(self):
        return "http://127.0.0.1:%d" % self.port


class TLSProxy(Proxy):
    """The forwarder behind TLS: https://127.0.0.1:port with cert/key, to moto over plain http."""

    def __init__(self, target, cert, key):
        import ssl
        super().__init__(free_port(), target)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.up()

    def wrap(self, c):
        try:
            return self.ctx.wrap_socket(c, server_side=True)
        except OSError:
            c.close()   # the client refused our certificate: what some cases expect
            return None

    def url(self):
        return "https://127.0.0.1:%d" % self.port


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_ca(d, name):
    """A CA of its own in d: (name.pem, name.key)."""
    pem, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-keyout", key, "-out", pem, "-subj", "/CN=" + name,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    return pem, key


def make_server_cert(d, ca_pem, ca_key):
    """A certificate for 127.0.0.1 issued by the CA: (cert, key)."""
    cert, key, csr, ext = (os.path.join(d, n) for n in ("srv.pem", "srv.key", "srv.csr", "srv.ext"))
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", csr, "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
            "-out", cert, "-extfile", ext)
    return cert, key


def in_system_store(ca_dir, argv):
    """argv run with ca_dir mounted over /etc/ssl/certs, the directory libcurl trusts by default."""
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    return unshare + ["sh", "-c", 'mount --bind "$0" /etc/ssl/certs && exec "$@"', ca_dir] + argv


def tls_cases(tmp, audit, port, env, ref):
    """HTTPS with certificate verification, and what a named CA file trusts."""
    if not shutil.which("openssl"):
        print("skip - TLS cases: no openssl command")
        return
    d = os.path.join(tmp, "tls")
    os.mkdir(d)
    ca_pem, ca_key = make_ca(d, "kc-test-ca")
    other_pem, _ = make_ca(d, "kc-other-ca")
    cert, key = make_server_cert(d, ca_pem, ca_key)
    proxy = TLSProxy(port, cert, key)
    try:
        tls_cases_through(proxy, d, audit, env, ref, ca_pem, other_pem)
    finally:
        proxy.down()


def tls_cases_through(proxy, d, audit, env, ref, ca_pem, other_pem):
    """The cases of tls_cases, through proxy (https, a certificate of ca_pem's)."""
    e = dict(env, AWS_ENDPOINT_URL_KMS=proxy.url())
    del e["KMSCRYPT_AWS_ALLOW_HTTP"]
    rc, out, _ = drive(dict(e, KMSCRYPT_AWS_CA_FILE=ca_pem), audit, "describe", ref)
    check("https with the CA file that issued the endpoint's certificate", rc == 0, out)
    rc, out, _ = drive(e, audit, "describe", ref)
    check("https: a certificate the system store does not know is refused (EPROTO)", err_name(out) == "EPROTO", out)
    rc, out, _ = drive(dict(e, KMSCRYPT_AWS_CA_FILE=other_pem), audit, "describe", ref)
    check("https: a certificate the named CA file did not issue is refused (EPROTO)", err_name(out) == "EPROTO", out)

    # The system's CA directory trusting the issuer, as if a public CA had issued it: a named
    # CA file replaces the system store, as AWS_CA_BUNDLE does in the SDKs, rather than adding to it.
    store = os.path.join(d, "system-store")
    os.mkdir(store)
    shutil.copy(ca_pem, store)
    openssl("rehash", store)
    shutil.copy(ca_pem, os.path.join(store, "ca-certificates.crt"))   # libcurl's default bundle file
    argv = [DRIVER, audit, "describe", ref]
    try:
        p = subprocess.run(in_system_store(store, argv), env=e, capture_output=True, text=True, timeout=60)
    except OSError as ex:
        print("skip - TLS cases with a system store of our own: %s" % ex)
        return
    if "ok" not in p.stdout.split()[:1]:
        print("skip - TLS cases with a system store of our own: %s %s" % (p.stdout.strip(), p.stderr.strip()))
        return
    check("https: the system store is used when no CA file is named", True)
    p = subprocess.run(in_system_store(store, argv), env=dict(e, KMSCRYPT_AWS_CA_FILE=other_pem),
                       capture_output=True, text=True, timeout=60)
    out = p.stdout.strip()
    check("https: with a CA file named, the system store is not trusted as well", err_name(out) == "EPROTO", out)


def base_env(endpoint, tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("KMSCRYPT_")}
    env.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_KMS": endpoint, "KMSCRYPT_AWS_ALLOW_HTTP": "1",
        # Never reach for the real metadata addresses from a test.
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(tmp, "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(tmp, "no-credentials"),
    })
    return env


def drive(env, audit_dir, *args, timeout=60):
    p = subprocess.run([DRIVER, audit_dir] + list(args), env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout.strip()
    words = out.split()
    fields = dict(zip(words[1::2], words[2::2])) if words[:1] == ["ok"] else {}
    return p.returncode, out, fields


def err_name(out):
    w = out.split()
    return w[1] if len(w) > 1 and w[0] == "error" else None


def invalid_state_cases(tmp, env, audit, ref1, ref2, blob):
    """KMSInvalidStateException names no state: DescribeKey tells a custom key store that is
    disconnected (Unavailable) or a replica being made (Creating, Updating), an outage that
    kmscryptd retries (EAGAIN), from a key pending deletion (EKEYEXPIRED, final, as before);
    a key it finds Enabled was enabled again between the two calls, a race that a new try
    wins (EAGAIN too); a DescribeKey that fails leaves the refusal final.  The operation is sent once, and its
    one audit record carries its own request id, not DescribeKey's."""
    log_path = os.path.join(audit, "audit.log")
    scratch = os.path.join(tmp, "state-out.blob")
    pt_file = os.path.join(tmp, "state-pt.bin")
    with open(pt_file, "wb") as f:
        f.write(os.urandom(32))
    ops = {"Decrypt": ["decrypt", ref1, CTX, blob],
           "GenerateDataKey": ["generate", ref1, CTX, scratch],
           "Encrypt": ["encrypt", ref1, CTX, pt_file, scratch],
           "ReEncrypt": ["reencrypt", ref1, CTX, blob, ref2, CTX, scratch]}
    final = "not usable in its current state (pending deletion?)"
    cases = [("Decrypt", dict(describe_state="Unavailable"), "EAGAIN",
              "is Unavailable: its custom key store is disconnected"),
             ("Decrypt", dict(describe_state="Creating"), "EAGAIN", "is Creating: "),
             ("Decrypt", dict(describe_state="Updating"), "EAGAIN", "is Updating: "),
             ("Decrypt", dict(describe_state="Enabled"), "EAGAIN",
              "is Enabled: its state changed while the request ran; retryable, not a refusal"),
             ("Decrypt", dict(describe_state="PendingDeletion"), "EKEYEXPIRED", final),
             ("Decrypt", dict(describe_state="PendingImport"), "EKEYEXPIRED", final),
             ("Decrypt", dict(describe_etype="AccessDeniedException"), "EKEYEXPIRED", final),
             ("Decrypt", dict(), "EKEYEXPIRED", final),
             ("GenerateDataKey", dict(describe_state="Unavailable"), "EAGAIN", "is Unavailable"),
             ("Encrypt", dict(describe_state="Unavailable"), "EAGAIN", "is Unavailable"),
             ("ReEncrypt", dict(describe_state="Unavailable"), "EAGAIN", "is Unavailable"),
             ("ReEncrypt", dict(describe_state="Enabled"), "EAGAIN", "is Enabled: its state changed"),
             # The other key's outage explains more than a key found Enabled; a revoked one stands.
             ("ReEncrypt", dict(describe_state="Enabled,Unavailable"), "EAGAIN", "is Unavailable"),
             ("ReEncrypt", dict(describe_state="Enabled,PendingDeletion"), "EKEYEXPIRED", final),
             ("ReEncrypt", dict(describe_state="PendingDeletion"), "EKEYEXPIRED", final)]
    for operation, describe, want_err, want_text in cases:
        srv, eport = fake_imds.start("error", etype="KMSInvalidStateException", **describe)
        e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport)
        before = len(open(log_path).readlines())
        rc, out, _ = drive(e, audit, *ops[operation])
        sent = [h.get("X-Amz-Target", "").split(".")[-1] for _, _, h in srv.RequestHandlerClass.log]
        recs = [json.loads(line) for line in open(log_path).readlines()[before:]]
        srv.shutdown()
        what = "%s refused for its key's state, DescribeKey %s -> %s" % (
            operation, describe.get("describe_state") or describe.get("describe_etype") or "refused too", want_err)
        # ReEncrypt names two keys, each asked for once, the second unless the first settled it.
        first = (describe.get("describe_state") or "").split(",")[0]
        describes = 2 if operation == "ReEncrypt" and first in ("Enabled", "Unavailable") else 1
        check(what, rc == 1 and err_name(out) == want_err and want_text in out and "err-req-1" in out
              and ("state-req-" in out) == (want_err == "EAGAIN")
              and sent == [operation] + ["DescribeKey"] * describes, "%s (sent %s)" % (out, sent))
        check(what + ": one audit record, the operation's request id",
              len(recs) == 1 and recs[0].get("operation") == operation and recs[0].get("result") == "error"
              and "request-id err-req-1" in (recs[0].get("detail") or "")
              and want_text in (recs[0].get("error") or ""), recs)


def drive_paused(env, audit_dir, pause, *args):
    """drive(), the driver stopped at its fault point before it asks DescribeKey why it was refused,
    for pause seconds of its deadline; also the seconds it ran after it was let go (None: it never
    stopped there)."""
    p = subprocess.Popen([DRIVER, audit_dir] + list(args), env=dict(env, KC_FAULT_STOP="aws:before-explain"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 30
    while time.time() < end and p.poll() is None:
        with open("/proc/%d/stat" % p.pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                break
        time.sleep(0.02)
    else:
        p.kill()
        return -1, p.communicate()[0].strip(), None
    time.sleep(pause)
    t0 = time.monotonic()
    p.send_signal(signal.SIGCONT)
    out = p.communicate(timeout=60)[0].strip()
    return p.returncode, out, time.monotonic() - t0


def explain_deadline_cases(env, audit, ref, blob):
    """The DescribeKey that explains a refusal for the key's state has what is left of the
    operation's deadline, not one of its own: none left, it is not sent and the refusal stands
    (EKEYEXPIRED, though the stub would say Unavailable); a little left, it is cut off there."""
    final = "not usable in its current state (pending deletion?)"
    srv, eport = fake_imds.start("error", etype="KMSInvalidStateException", describe_state="Unavailable")
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport, KMSCRYPT_AWS_DEADLINE_MS="1000")
    rc, out, ran = drive_paused(e, audit, 1.2, "decrypt", ref, CTX, blob)
    sent = [h.get("X-Amz-Target", "").split(".")[-1] for _, _, h in srv.RequestHandlerClass.log]
    srv.shutdown()
    check("refused for the key's state past the operation's deadline: DescribeKey not sent, EKEYEXPIRED",
          ran is not None and rc == 1 and err_name(out) == "EKEYEXPIRED" and final in out and sent == ["Decrypt"],
          "%s (sent %s)" % (out, sent))
    # 2 s for all; 1 s of it stopped: the DescribeKey, answered after 1.5 s, is cut off after the
    # second that is left.  With a deadline of its own it would be answered (EAGAIN).
    srv, eport = fake_imds.start("error", etype="KMSInvalidStateException", describe_state="Unavailable",
                                 describe_sleep=1.5)
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport, KMSCRYPT_AWS_DEADLINE_MS="2000")
    rc, out, ran = drive_paused(e, audit, 1.0, "decrypt", ref, CTX, blob)
    sent = [h.get("X-Amz-Target", "").split(".")[-1] for _, _, h in srv.RequestHandlerClass.log]
    srv.shutdown()
    check("DescribeKey after a refusal has what is left of the deadline: cut off, EKEYEXPIRED",
          ran is not None and ran < 1.4 and rc == 1 and err_name(out) == "EKEYEXPIRED" and final in out
          and sent == ["Decrypt", "DescribeKey"], "%s (sent %s, ran %s s)" % (out, sent, ran))


def main():
    if not os.access(DRIVER, os.X_OK):
        print("SKIP: %s not built" % DRIVER)
        return 77
    tmp = tempfile.mkdtemp(prefix="kc-aws-")
    audit = os.path.join(tmp, "audit")
    os.mkdir(audit, 0o700)
    port = free_port()
    moto_p = start_moto(port, tmp)
    try:
        return run(tmp, audit, port)
    finally:
        moto_p.terminate()
        moto_p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def boto3_decrypt(kms, key, blob):
    """What boto3 unwraps from blob (bytes, or a file name) under CTX's dict; None when it cannot."""
    try:
        if isinstance(blob, str):
            blob = open(blob, "rb").read()
        return kms.decrypt(CiphertextBlob=blob, KeyId=key["Arn"],
                           EncryptionContext={"db-id": "db-1", "volume-id": "vol-1"})["Plaintext"]
    except Exception as ex:   # a failed case is reported by its check, not as a traceback
        print("# boto3 decrypt: %s" % ex)
        return None


def encrypt_cases(tmp, audit, env, kms, k1, ref1, alias_ref):
    """Encrypt: key material the caller already holds (a volume being adopted), wrapped under the CMK."""
    import hashlib
    pt_file, blob = os.path.join(tmp, "pt"), os.path.join(tmp, "blob-encrypt")
    pt = os.urandom(64)
    with open(pt_file, "wb") as fh:
        fh.write(pt)
    want = hashlib.sha256(pt).hexdigest()
    rc, out, f = drive(env, audit, "encrypt", alias_ref, CTX, pt_file, blob)
    check("encrypt through the alias ARN: the key id KMS names, no plaintext returned",
          rc == 0 and f.get("key-id") == k1["KeyId"] and f.get("plaintext") == "none", out)
    rc, out, f = drive(env, audit, "decrypt", ref1, CTX, blob)
    check("decrypt of an Encrypt blob gives the caller's key", rc == 0 and f.get("plaintext-sha256") == want, out)
    check("Encrypt sent the context as the native map", boto3_decrypt(kms, k1, blob) == pt)
    rc, out, _ = drive(env, audit, "decrypt", ref1, "db-id=db-1,volume-id=vol-2", blob)
    check("Encrypt blob under another context refused (EBADMSG)", err_name(out) == "EBADMSG", out)
    with open(pt_file, "wb") as fh:
        fh.write(os.urandom(4097))
    rc, out, _ = drive(env, audit, "encrypt", ref1, CTX, pt_file, blob)
    check("Encrypt of more than 4096 bytes refused (EINVAL)", err_name(out) == "EINVAL", out)
    recs = [json.loads(line) for line in open(os.path.join(audit, "audit.log"))]
    enc = [r for r in recs if r.get("operation") == "Encrypt" and r.get("result") == "ok"]
    check("Encrypt audited under the key id with the KMS request id",
          len(enc) == 1 and k1["KeyId"] in json.dumps(enc[0]) and "request-id" in (enc[0].get("detail") or ""),
          json.dumps(enc))


def amz_dates(srv):
    """The X-Amz-Date of each request the stub saw, as epoch seconds."""
    import calendar
    return [calendar.timegm(time.strptime(h.get("X-Amz-Date", "19700101T000000Z"), "%Y%m%dT%H%M%SZ"))
            for _, _, h in srv.RequestHandlerClass.log]


def skew_cases(env, audit):
    """A KMS whose clock is off ours refuses the request's time: signed again once with its Date."""
    ref = "aws:" + fake_imds.Handler.SKEW_KEY
    for etype, message, skew in (("InvalidSignatureException", fake_imds.Handler.message, 3600),
                                 ("RequestTimeTooSkewed", "The difference is too large", -3600),
                                 ("InvalidSignatureException", "Signature not yet current: 20240101T010000Z is "
                                  "still later than 20240101T000500Z (20240101T000000Z + 5 min.)", -900)):
        srv, sport = fake_imds.start("skew", etype=etype, message=message, skew=skew)
        e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport)
        t0 = time.time()
        rc, out, _ = drive(e, audit, "describe", ref, "2")
        d = amz_dates(srv)
        check("%s (server %+d s): signed again with the server's clock, which the session keeps" % (etype, skew),
              rc == 0 and len(d) == 3 and abs(d[0] - t0) < 30 and all(abs(x - t0 - skew) < 30 for x in d[1:]),
              "%s %s" % (out, [x - int(t0) for x in d]))
        srv.shutdown()
    # Temporary credentials expire by the KMS's clock: once it corrected ours, they are judged by it too.
    # Expiring 2 minutes from the server's time are 62 minutes from ours, and within the 5 minutes
    # of the refresh by the corrected clock: read again before the second request.
    csrv, cport = fake_imds.start("container", expires_in=3600 + 120)
    srv, sport = fake_imds.start("skew", etype="RequestTimeTooSkewed", message="The difference is too large")
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport,
             AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:%d/creds" % cport,
             AWS_CONTAINER_AUTHORIZATION_TOKEN=fake_imds.Handler.auth)
    del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
    rc, out, _ = drive(e, audit, "describe", ref)
    check("credentials near their expiry by the server's clock: read again after the correction",
          rc == 0 and len(srv.RequestHandlerClass.log) == 2 and len(csrv.RequestHandlerClass.log) == 2,
          "%s; %d KMS requests, %d credential reads" % (out, len(srv.RequestHandlerClass.log),
                                                        len(csrv.RequestHandlerClass.log)))
    srv.shutdown()
    csrv.shutdown()
    # Refused every time: one correction per call, then the refusal is reported.
    srv, sport = fake_imds.start("skew", etype="InvalidSignatureException", fail=99)
    rc, out, _ = drive(dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport), audit, "describe", ref)
    check("refused for its time again after the correction: EACCES, two requests", err_name(out) == "EACCES"
          and len(srv.RequestHandlerClass.log) == 2, out)
    srv.shutdown()
    # Nothing to correct: a server whose Date agrees with ours, a signature refused for another reason.
    for what, kw in (("Date agrees with our clock", dict(skew=5)),
                     ("signature refused, not for its time", dict(message="The request signature we calculated "
                                                                  "does not match the signature you provided."))):
        srv, sport = fake_imds.start("skew", etype="InvalidSignatureException", **kw)
        rc, out, _ = drive(dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport), audit, "describe", ref)
        check("%s: not signed again (EACCES, one request)" % what, err_name(out) == "EACCES"
              and len(srv.RequestHandlerClass.log) == 1, out)
        srv.shutdown()


def stock_volume_key(img, keyfile):
    """The volume key of a LUKS2 image as stock cryptsetup shows it, in hex."""
    out = subprocess.run(["cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", keyfile, img],
                         check=True, capture_output=True, text=True).stdout
    return "".join(out.split("MK dump:", 1)[1].split()).lower()


def adopt_cases(tmp, env, kms, k1, alias_ref):
    """kmscrypt adopt of a volume stock cryptsetup made, with an AWS key: its own key wrapped by Encrypt."""
    import base64
    kmscrypt = os.path.join(BUILD, "kmscrypt")
    if not shutil.which("cryptsetup") or not (os.geteuid() == 0 or os.access("/run/cryptsetup", os.W_OK)):
        print("skip - adopt with an AWS key: needs cryptsetup and root (libcryptsetup's /run/cryptsetup)")
        return
    d = os.path.join(tmp, "adopt")
    os.mkdir(d)
    img, pw, conf = os.path.join(d, "v.img"), os.path.join(d, "pass"), os.path.join(d, "empty.conf")
    open(conf, "w").close()
    with open(pw, "w") as fh:
        fh.write("old passphrase")
    with open(img, "wb") as fh:
        fh.truncate(32 << 20)
    subprocess.run(["cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", pw, img], check=True, capture_output=True)
    old_key = stock_volume_key(img, pw)
    e = dict(env, KMSCRYPT_CONFIG=conf, KMSCRYPT_AUDIT_HEAD=os.path.join(d, "audit.head"))
    log = os.path.join(d, "audit.log")

    def kc(*args):
        p = subprocess.run([kmscrypt, "--keystore", os.path.join(d, "ks"), "--audit-log", log, "--json"] + list(args),
                           env=e, capture_output=True, text=True, timeout=120)
        try:
            return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None, p.stderr.strip()
        except ValueError:
            return p.returncode, None, p.stdout + p.stderr

    rc, j, err = kc("adopt", img, "--key", alias_ref, "--context", CTX, "--key-file", pw)
    check("adopt with an AWS key (alias ARN)", rc == 0 and j and j.get("KeyId") == k1["KeyId"], "%s %s" % (j, err))
    rc, j, err = kc("dump", img)
    tok = (j or {}).get("KmscryptToken") or {}
    check("adopted token names the aws key id, not the alias", tok.get("Provider") == "aws"
          and tok.get("KeyRef") == "aws:" + k1["KeyId"], "%s %s" % (tok, err))
    blob, ctx_json = tok.get("CiphertextBlob", ""), json.dumps(tok.get("EncryptionContext"))
    rc, j, err = kc("kms", "decrypt", "--ciphertext-blob", blob, "--context-json", ctx_json, "--key", tok.get("KeyRef", ""))
    got = base64.b64decode(j["Plaintext"]).hex() if rc == 0 and j else None
    check("adopted token: Decrypt gives the volume's own key", got == old_key, "%s %s" % (j and "json", err))
    pt = boto3_decrypt(kms, k1, base64.b64decode(blob))
    check("adopted token: boto3 unwraps the same key with the same context", pt and pt.hex() == old_key)
    rc, j, err = kc("kms", "decrypt", "--ciphertext-blob", blob, "--context", "db-id=db-1,volume-id=vol-2",
                    "--key", tok.get("KeyRef", ""))
    check("adopted token under another context refused", rc != 0 and "InvalidCiphertextException" in err, err)
    check("adopt: the passphrase still opens",
          subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", pw, img]).returncode == 0)
    recs = [json.loads(line) for line in open(log)]
    check("adopt audited as Encrypt under the key id with the request id",
          any(r.get("operation") == "Encrypt" and r.get("result") == "ok" and k1["KeyId"] in json.dumps(r)
              and "request-id" in (r.get("detail") or "") for r in recs), json.dumps(recs[:3]))

    # Replacing the data key wraps the temporary keyslots' passphrase with Encrypt too (docs/token.md).
    rc, j, err = kc("reencrypt", img, "--recovery-passphrase-file", pw)
    check("reencrypt of the adopted AWS volume", rc == 0 and j and j.get("Finished") is True, "%s %s" % (j, err))
    rc, j, err = kc("dump", img)
    tok = (j or {}).get("KmscryptToken") or {}
    rc, j, err = kc("kms", "decrypt", "--ciphertext-blob", tok.get("CiphertextBlob", ""), "--context-json",
                    json.dumps(tok.get("EncryptionContext")), "--key", tok.get("KeyRef", ""))
    new_key = base64.b64decode(j["Plaintext"]).hex() if rc == 0 and j else None
    check("after reencrypt the token unwraps to a new key", new_key and new_key != old_key, err)
    recs = [json.loads(line) for line in open(log)]
    check("reencrypt wrapped its passphrase with Encrypt (purpose=reencrypt)",
          any(r.get("operation") == "Encrypt" and r.get("result") == "ok" and "reencrypt" in json.dumps(r)
              for r in recs), json.dumps([r for r in recs if r.get("operation") == "Encrypt"]))


def run(tmp, audit, port):
    endpoint = "http://127.0.0.1:%d" % port
    env = base_env(endpoint, tmp)
    kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    k1 = kms.create_key(Description="kmscrypt test 1")["KeyMetadata"]
    k2 = kms.create_key(Description="kmscrypt test 2")["KeyMetadata"]
    kms.create_alias(AliasName="alias/pgdata", TargetKeyId=k1["KeyId"])
    ref1, ref2 = "aws:" + k1["Arn"], "aws:" + k2["Arn"]
    alias_ref = "aws:" + k1["Arn"].split(":key/")[0] + ":alias/pgdata"
    blob, blob2 = os.path.join(tmp, "blob"), os.path.join(tmp, "blob2")

    # GenerateDataKey, then Decrypt of what it wrapped.
    rc, out, f = drive(env, audit, "generate", ref1, CTX, blob)
    check("generate", rc == 0 and f.get("bytes") == "64" and f.get("key-id") == k1["KeyId"], out)
    want = f.get("plaintext-sha256")
    rc, out, f = drive(env, audit, "decrypt", ref1, CTX, blob)
    check("decrypt gives the generated key", rc == 0 and f.get("plaintext-sha256") == want, out)

    # The context went to KMS as its native map: boto3 decrypts with the same dict.
    import hashlib
    pt = kms.decrypt(CiphertextBlob=open(blob, "rb").read(), KeyId=k1["Arn"],
                     EncryptionContext={"db-id": "db-1", "volume-id": "vol-1"})["Plaintext"]
    check("EncryptionContext is the native map", hashlib.sha256(pt).hexdigest() == want)

    rc, out, _ = drive(env, audit, "decrypt", ref1, "db-id=db-1,volume-id=vol-2", blob)
    check("wrong context refused with EBADMSG", rc == 1 and err_name(out) == "EBADMSG"
          and "InvalidCiphertextException" in out, out)
    rc, out, f = drive(env, audit, "decrypt", alias_ref, CTX, blob)
    check("decrypt through the alias ARN", rc == 0 and f.get("plaintext-sha256") == want, out)
    # Real KMS answers IncorrectKeyException (EBADMSG); moto answers AccessDeniedException.
    rc, out, _ = drive(env, audit, "decrypt", ref2, CTX, blob)
    check("blob of another key refused (KeyId is sent)", rc == 1 and err_name(out) in ("EBADMSG", "EACCES"), out)

    # ReEncrypt to another key and context, never seeing the plaintext.
    rc, out, f = drive(env, audit, "reencrypt", ref1, CTX, blob, ref2, "db-id=db-1,volume-id=vol-9", blob2)
    check("re-encrypt", rc == 0 and f.get("key-id") == k2["KeyId"] and f.get("plaintext") == "none", out)
    rc, out, f = drive(env, audit, "decrypt", ref2, "db-id=db-1,volume-id=vol-9", blob2)
    check("re-encrypted blob opens under the new key and context",
          rc == 0 and f.get("plaintext-sha256") == want, out)
    # Asked by the alias ARN, the audit record names the source key by the id KMS answered (SourceKeyId).
    rc, out, f = drive(env, audit, "reencrypt", alias_ref, CTX, blob, ref2, "db-id=db-1,volume-id=vol-9", blob2)
    last = json.loads(open(os.path.join(audit, "audit.log")).readlines()[-1])
    check("re-encrypt from an alias: the audit names the source key id", rc == 0 and
          (last.get("detail") or "").startswith("source %s version 1;" % k1["KeyId"]), "%s %s" % (out, last))
    # Refused for the source context (InvalidCiphertextException): the record names the source key,
    # the one that refused, not the destination.
    rc, out, f = drive(env, audit, "reencrypt", ref1, "db-id=db-1,volume-id=vol-2", blob, ref2,
                       "db-id=db-1,volume-id=vol-9", os.path.join(tmp, "refused.blob"))
    last = json.loads(open(os.path.join(audit, "audit.log")).readlines()[-1])
    check("re-encrypt under a wrong source context: the audit names the source key",
          rc == 1 and err_name(out) == "EBADMSG" and last.get("operation") == "ReEncrypt"
          and last.get("result") == "error" and last.get("key_id") == k1["KeyId"], "%s %s" % (out, last))

    encrypt_cases(tmp, audit, env, kms, k1, ref1, alias_ref)

    adopt_cases(tmp, env, kms, k1, alias_ref)

    rc, out, f = drive(env, audit, "describe", alias_ref)
    check("describe", rc == 0 and f.get("state") == "Enabled" and f.get("key-id") == k1["KeyId"]
          and f.get("arn") == ref1 and f.get("alias") == "alias/pgdata", out)

    # Key states, driven through the provider.  moto 5 keeps the state but does
    # not refuse crypto operations on a disabled or pending-deletion key, so the
    # refusals themselves are checked below against replayed AWS error bodies.
    rc, out, _ = drive(env, audit, "disable", ref1)
    check("disable through the provider", rc == 0 and
          kms.describe_key(KeyId=k1["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled", out)
    rc, out, f = drive(env, audit, "describe", ref1)
    check("describe shows Disabled", f.get("state") == "Disabled", out)
    rc, out, _ = drive(env, audit, "enable", ref1)
    check("enable through the provider", rc == 0 and
          kms.describe_key(KeyId=k1["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled", out)
    rc, out, f = drive(env, audit, "schedule-deletion", ref2, "7")
    check("schedule deletion", rc == 0 and int(f.get("deletion", "0")) > time.time() + 6 * 86400, out)
    rc, out, f = drive(env, audit, "describe", ref2)
    check("describe shows PendingDeletion and its date", f.get("state") == "PendingDeletion"
          and int(f.get("deletion", "0")) > time.time(), out)
    rc, out, _ = drive(env, audit, "schedule-deletion", ref2, "3")
    check("deletion window under 7 days refused", err_name(out) == "EINVAL", out)
    rc, out, _ = drive(env, audit, "cancel-deletion", ref2)
    check("cancel deletion", rc == 0 and
          kms.describe_key(KeyId=k2["KeyId"])["KeyMetadata"]["KeyState"] != "PendingDeletion", out)
    kms.enable_key(KeyId=k2["KeyId"])

    # Every KeyState AWS documents, from a stub (moto makes only three of them): each is read as
    # itself, not as "Disabled" (which would suspend revoke=suspend volumes for a disconnected
    # custom key store); one AWS does not document is refused, not guessed.
    for state in ("Enabled", "Disabled", "PendingDeletion", "PendingReplicaDeletion", "PendingImport",
                  "Unavailable", "Creating", "Updating"):
        srv, sport = fake_imds.start("state", key_state=state)
        rc, out, f = drive(dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport), audit, "describe", ref1)
        check("describe reads KeyState %s as itself" % state, rc == 0 and f.get("state") == state, out)
        srv.shutdown()
    srv, sport = fake_imds.start("state", key_state="Hibernating")
    rc, out, _ = drive(dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport), audit, "describe", ref1)
    check("an undocumented KeyState is refused", rc == 1 and err_name(out) == "EBADMSG" and "Hibernating" in out, out)
    srv.shutdown()

    # AWS error bodies replayed by a loopback stub: each maps to its errno, none is retried.
    for etype, want_err in (("DisabledException", "EKEYREVOKED"),
                            ("IncorrectKeyException", "EBADMSG"), ("InvalidCiphertextException", "EBADMSG"),
                            ("AccessDeniedException", "EACCES"), ("NotFoundException", "ENOKEY")):
        srv, eport = fake_imds.start("error", etype=etype)
        e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport)
        rc, out, _ = drive(e, audit, "decrypt", ref1, CTX, blob)
        check("%s -> %s, not retried" % (etype, want_err), rc == 1 and err_name(out) == want_err and etype in out
              and "err-req-1" in out and len(srv.RequestHandlerClass.log) == 1, out)
        srv.shutdown()
    srv, eport = fake_imds.start("error", etype="InternalFailure", status=503)
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport, KMSCRYPT_AWS_DEADLINE_MS="1500")
    rc, out, _ = drive(e, audit, "decrypt", ref1, CTX, blob)
    check("5xx retried then EAGAIN", err_name(out) == "EAGAIN" and len(srv.RequestHandlerClass.log) >= 3, out)
    # ... but not for a call that KMS may have carried out: sent again, a deletion already scheduled fails.
    rc, out, _ = drive(e, audit, "schedule-deletion", ref2, "7")
    sent = [x for x in srv.RequestHandlerClass.log if "ScheduleKeyDeletion" in str(x)]
    check("5xx on ScheduleKeyDeletion not retried", rc == 1 and len(sent) == 1, "%s (sent %d times)" % (out, len(sent)))
    srv.shutdown()
    # An expired session token: the credentials are read again and the call tried once more.
    srv, eport = fake_imds.start("error", etype="ExpiredTokenException")
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % eport)
    rc, out, _ = drive(e, audit, "decrypt", ref1, CTX, blob)
    check("ExpiredToken retried once", rc == 1 and err_name(out) == "EACCES" and
          len(srv.RequestHandlerClass.log) == 2, out)
    srv.shutdown()

    invalid_state_cases(tmp, env, audit, ref1, ref2, blob)
    explain_deadline_cases(env, audit, ref1, blob)

    skew_cases(env, audit)

    missing = "aws:" + k1["Arn"].rsplit("/", 1)[0] + "/11111111-2222-3333-4444-555555555555"
    rc, out, _ = drive(env, audit, "describe", missing)
    check("missing key refused with ENOKEY", rc == 1 and err_name(out) == "ENOKEY", out)
    rc, out, _ = drive(env, audit, "describe", "aws:arn:aws:kms:eu-west-1:12345:key/x")
    check("malformed ARN refused with EINVAL", rc == 1 and err_name(out) == "EINVAL", out)

    # The audit trail names the KMS request id of each remote call.
    recs = [json.loads(line) for line in open(os.path.join(audit, "audit.log"))]
    ok = [r for r in recs if r.get("result") == "ok"]
    with_id = [r for r in ok if "request-id" in (r.get("detail") or "")]
    check("every successful audit record carries the KMS request id", len(ok) > 10 and len(with_id) == len(ok),
          "%d of %d" % (len(with_id), len(ok)))
    check("audit records of refusals by KMS carry it too",
          any(r.get("result") != "ok" and "request-id" in (r.get("detail") or "") for r in recs))

    # Transport policy: plain http needs the flag, and loopback.
    e = dict(env)
    del e["KMSCRYPT_AWS_ALLOW_HTTP"]
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("plain http refused without KMSCRYPT_AWS_ALLOW_HTTP", err_name(out) == "EPERM", out)
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://192.0.2.1:4566")
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("plain http to a non-loopback host refused", err_name(out) == "EPERM", out)
    e = dict(env)
    del e["AWS_ENDPOINT_URL_KMS"]
    e["AWS_ENDPOINT_URL"] = endpoint
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("AWS_ENDPOINT_URL is the fallback override", rc == 0, out)
    # SigV4 signs the path "/": an endpoint with another path is refused, naming the variable.
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        e = dict(env, **{var: endpoint + "/kms/"})
        if var == "AWS_ENDPOINT_URL":
            del e["AWS_ENDPOINT_URL_KMS"]
        rc, out, _ = drive(e, audit, "describe", ref1)
        check("%s with a path refused, naming it" % var,
              err_name(out) == "EINVAL" and (var + ": AWS KMS endpoint") in out and "may not have a path" in out, out)
    e = dict(env, AWS_ENDPOINT_URL_KMS=endpoint + "/")
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("an endpoint ending in / is taken", rc == 0, out)

    # kmscrypt.conf's aws-* keys, under the SDKs' variables (docs/aws.md).
    conf = os.path.join(tmp, "kmscrypt.conf")

    def with_conf(text, **env_over):
        with open(conf, "w") as f:
            f.write(text)
        e = {k: v for k, v in env.items() if k not in ("AWS_ENDPOINT_URL_KMS", "AWS_REGION")}
        e["KMSCRYPT_CONFIG"] = conf
        e.update(env_over)
        return e

    dead = "http://127.0.0.1:%d" % free_port()
    e = with_conf("aws-endpoint = %s\n" % endpoint)
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("aws-endpoint from kmscrypt.conf is used", rc == 0, out)
    e = with_conf("aws-endpoint = %s\n" % dead, AWS_ENDPOINT_URL_KMS=endpoint)
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("AWS_ENDPOINT_URL_KMS wins over aws-endpoint", rc == 0, out)
    e = with_conf("aws-endpoint = %s\n" % dead, AWS_ENDPOINT_URL=endpoint)
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("AWS_ENDPOINT_URL wins over aws-endpoint", rc == 0, out)
    e = with_conf("aws-endpoint = %s\n" % endpoint, KMSCRYPT_AWS_DEADLINE_MS="300")
    e["AWS_ENDPOINT_URL_KMS"] = dead
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("aws-endpoint is not a fallback when the variable's endpoint is down", err_name(out) == "ECONNREFUSED", out)
    e = with_conf("aws-endpoint = http://192.0.2.1:4566\n")
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("aws-endpoint: plain http to a non-loopback host refused", err_name(out) == "EPERM"
          and "loopback" in out, out)
    e = with_conf("aws-endpoint = %s\n" % endpoint)
    del e["KMSCRYPT_AWS_ALLOW_HTTP"]
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("aws-endpoint: plain http on loopback still needs KMSCRYPT_AWS_ALLOW_HTTP", err_name(out) == "EPERM", out)
    # Ignored endpoints: the non-loopback http one is not even looked at (a
    # malformed key is refused before any traffic, so nothing leaves).
    e = with_conf("aws-endpoint = http://192.0.2.1:4566\n", AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="true")
    rc, out, _ = drive(e, audit, "describe", "aws:arn:aws:kms:eu-west-1:1:key/x")
    check("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true ignores aws-endpoint", err_name(out) == "EINVAL", out)
    for text, says in (("aws-endpoint = kms.eu-west-1.amazonaws.com\n", "kmscrypt.conf:1: aws-endpoint: expected"),
                       ("aws-region = EU-WEST-1\n", "aws-region: not an AWS region name"),
                       ("aws-ca-file = ca.pem\n", "aws-ca-file: path must be absolute")):
        rc, out, _ = drive(with_conf(text, AWS_ENDPOINT_URL_KMS=endpoint), audit, "describe", ref1)
        check("bad kmscrypt.conf refused: %s" % text.strip(), err_name(out) == "EINVAL" and says in out, out)
    rc, out, _ = drive(with_conf("aws-endpoint = %s\naws-ca-file = %s/missing.pem\n" % (endpoint, tmp)),
                       audit, "describe", ref1)
    check("aws-ca-file that cannot be read is named at open", err_name(out) == "ENOENT" and "missing.pem" in out, out)
    # aws-region names the region of a bare key id; AWS_REGION wins over it.
    e = with_conf("aws-endpoint = %s\naws-region = %s\n" % (endpoint, REGION))
    rc, out, _ = drive(e, audit, "describe", "aws:" + k1["KeyId"])
    check("aws-region from kmscrypt.conf for a bare key id", rc == 0, out)
    e = with_conf("aws-endpoint = %s\naws-region = us-east-1\n" % endpoint)
    rc, out, _ = drive(e, audit, "describe", "aws:" + k1["KeyId"])
    check("aws-region us-east-1: the eu-west-1 key is not found there", err_name(out) == "ENOKEY", out)
    e["AWS_REGION"] = REGION
    rc, out, _ = drive(e, audit, "describe", "aws:" + k1["KeyId"])
    check("AWS_REGION wins over aws-region", rc == 0, out)

    # Server down, then up: refused within the deadline, then retried into success.
    pport = free_port()
    proxy = Proxy(pport, port)
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % pport, KMSCRYPT_AWS_DEADLINE_MS="1500")
    t0 = time.monotonic()
    rc, out, _ = drive(e, audit, "decrypt", ref1, CTX, blob)
    dt = time.monotonic() - t0
    check("server down: ECONNREFUSED after retries", err_name(out) == "ECONNREFUSED" and "attempts" in out
          and dt < 5, out)
    e["KMSCRYPT_AWS_DEADLINE_MS"] = "10000"
    threading.Timer(1.0, proxy.up).start()
    rc, out, f = drive(e, audit, "decrypt", ref1, CTX, blob)
    check("server back within the deadline: retried to success",
          rc == 0 and f.get("plaintext-sha256") == want and int(f.get("ms", "0")) >= 900, out)
    proxy.down()

    # A server that never answers in time.
    srv, sport = fake_imds.start("slow", sleep=5.0)
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % sport,
             KMSCRYPT_AWS_TIMEOUT_MS="400", KMSCRYPT_AWS_DEADLINE_MS="1200")
    t0 = time.monotonic()
    rc, out, _ = drive(e, audit, "describe", ref1)
    dt = time.monotonic() - t0
    check("slow server hits the timeout (ETIMEDOUT, within the deadline)",
          err_name(out) == "ETIMEDOUT" and dt < 3.0, "%s (%.2fs)" % (out, dt))
    srv.shutdown()

    # A connection closed before the whole body came is a reset: retried, then reported.
    srv, cport = fake_imds.start("truncate")
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % cport, KMSCRYPT_AWS_DEADLINE_MS="1500")
    rc, out, _ = drive(e, audit, "describe", ref1)
    hits = len(srv.RequestHandlerClass.log)
    check("body cut short retried then ECONNRESET", err_name(out) == "ECONNRESET" and hits >= 2,
          "%s (%d requests)" % (out, hits))
    srv.shutdown()

    # Throttling is retried with backoff, then reported.
    srv, tport = fake_imds.start("throttle")
    e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % tport, KMSCRYPT_AWS_DEADLINE_MS="1500")
    rc, out, _ = drive(e, audit, "describe", ref1)
    hits = len(srv.RequestHandlerClass.log)
    check("throttling retried then EBUSY", err_name(out) == "EBUSY" and hits >= 3 and "ThrottlingException" in out,
          "%s (%d requests)" % (out, hits))
    srv.shutdown()
    # ... also when a front end names it as the SDKs expect it too: in the
    # X-Amzn-ErrorType header only, or with a ":<url>" suffix.
    coral = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/"
    for how, kw in (("in X-Amzn-ErrorType only", dict(etype=coral, in_header=True)),
                    ("with a ':<url>' suffix", dict(etype=coral))):
        srv, tport = fake_imds.start("error", **kw)
        e = dict(env, AWS_ENDPOINT_URL_KMS="http://127.0.0.1:%d" % tport, KMSCRYPT_AWS_DEADLINE_MS="1500")
        rc, out, _ = drive(e, audit, "describe", ref1)
        hits = len(srv.RequestHandlerClass.log)
        check("throttling %s retried then EBUSY" % how, err_name(out) == "EBUSY" and hits >= 3,
              "%s (%d requests)" % (out, hits))
        srv.shutdown()

    # Credential sources.
    creds = os.path.join(tmp, "credentials")
    with open(creds, "w") as fh:
        fh.write("[default]\naws_access_key_id = wrong\n\n[ prod ]\naws_access_key_id = AKIAPROFILE\n"
                 "aws_secret_access_key = profile-secret\n[broken]\naws_access_key_id = x\n")
    # Each source's requests go through a recorder: signed with that source's key, its token sent.
    rec = Recorder(port)
    e = dict(env, AWS_SHARED_CREDENTIALS_FILE=creds, AWS_PROFILE="prod", AWS_ENDPOINT_URL_KMS=rec.url())
    del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("shared credentials file, profile prod: signed with its key", rc == 0 and rec.signed_with("AKIAPROFILE")
          and not rec.signed_with("wrong"), out)
    e["AWS_PROFILE"] = "broken"
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("profile without a secret refused", rc == 1 and "aws_secret_access_key" in out, out)

    srv, iport = fake_imds.start("imds")
    rec = Recorder(port)
    e = dict(env, AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:%d" % iport, AWS_ENDPOINT_URL_KMS=rec.url())
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"):
        del e[k]
    rc, out, _ = drive(e, audit, "describe", ref1)
    log = srv.RequestHandlerClass.log
    check("IMDSv2: token PUT first, then GETs with the token", rc == 0 and log and log[0][0] == "PUT"
          and all(h.get("X-aws-ec2-metadata-token") == fake_imds.TOKEN for m, _, h in log if m == "GET"), out)
    check("IMDS credentials: signed with the role's key, its session token sent",
          rec.signed_with("ASIAIMDSEXAMPLE", "fake-session-token"), out)
    srv.shutdown()

    srv, cport = fake_imds.start("container")
    rec = Recorder(port)
    e = dict(env, AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:%d/creds" % cport,
             AWS_CONTAINER_AUTHORIZATION_TOKEN="container-auth-token", AWS_ENDPOINT_URL_KMS=rec.url())
    del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("container credentials with an authorization token", rc == 0 and len(srv.RequestHandlerClass.log) == 1, out)
    check("container credentials: signed with the task's key, its session token sent",
          rec.signed_with("ASIACONTAINEREXAMPLE", "fake-session-token"), out)
    e["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong"
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("container endpoint refusing the token is an error", rc == 1 and "container" in out, out)
    srv.shutdown()

    e = dict(env)
    del e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"]
    rc, out, _ = drive(e, audit, "describe", ref1)
    check("no credentials anywhere: ENOKEY", err_name(out) == "ENOKEY" and "no AWS credentials" in out, out)

    tls_cases(tmp, audit, port, env, ref1)

    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
