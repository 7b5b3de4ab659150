#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The host side of the vm tier's AWS KMS tests (tests/vm/run.sh starts it
when a selected guest test says "# kcvm-host: aws").

    aws-host.py DIR

Makes a throw-away CA and a server certificate for the guest's view of the
server (IP 10.0.2.100, the QEMU guestfwd address) with openssl, starts
moto_server with that certificate on 127.0.0.1 (HTTPS), creates the keys
with boto3 (verifying the certificate), then writes DIR/env, lines of
NAME=VALUE for run.sh:

    KC_VM_AWS_PORT=<moto's port on 127.0.0.1>
    KC_AWS_ENDPOINT=https://10.0.2.100/       what the guest connects to
    KC_AWS_KEY=arn:aws:kms:...:key/...        an enabled key
    KC_AWS_REGION=eu-west-1

and DIR/ca.pem for the guest's kmscrypt.conf (aws-ca-file), with
DIR/other-ca.pem, a CA that signed nothing the server shows.  When moto or
boto3 is missing it writes only KC_AWS_SKIP=<reason> (spaces as '_', the
form a kernel command line word takes).  It then waits until it is sent
SIGTERM or its parent is gone, and stops moto.  All traffic stays on
127.0.0.1: the guest reaches it only through the guestfwd relay.
"""
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

GUEST_ADDR = "10.0.2.100"
REGION = "eu-west-1"


def write_env(d, pairs):
    tmp = os.path.join(d, "env.tmp")
    with open(tmp, "w") as f:
        for k, v in pairs:
            f.write("%s=%s\n" % (k, v))
    os.rename(tmp, os.path.join(d, "env"))


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(d):
    """A CA valid for a day, and a P-256 server certificate it signs for IP 10.0.2.100 and 127.0.0.1."""
    ca_key, ca, key, csr, cert = (os.path.join(d, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                              "server.pem"))
    ext = os.path.join(d, "server.ext")
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=kmscrypt vm tier test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=%s" % GUEST_ADDR)
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=critical,CA:FALSE\n" % GUEST_ADDR)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
            "-days", "1", "-extfile", ext)
    # A CA that signed nothing here: the guest's check that verification is real.
    openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", os.path.join(d, "other-ca.key"), "-out", os.path.join(d, "other-ca.pem"), "-days", "1",
            "-subj", "/CN=kmscrypt vm tier unrelated CA", "-addext", "basicConstraints=critical,CA:TRUE")
    return ca, cert, key


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    try:
        import boto3
        import moto  # noqa: F401  (moto_server comes with it)
    except ImportError as e:
        write_env(d, [("KC_AWS_SKIP", "no_%s_module_on_the_host:_pip_install_moto[server]" % (e.name or "moto"))])
        return 0

    parent = os.getppid()
    ca, cert, key = make_certs(d)
    port = free_port()
    log = open(os.path.join(d, "moto.log"), "w")
    moto_p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port), "-c", cert, "-k", key],
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def stop(*_):
        moto_p.terminate()
        try:
            moto_p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto_p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    tls = ssl.create_default_context(cafile=ca)
    url = "https://127.0.0.1:%d" % port
    why = "no answer in 30 s"
    for _ in range(300):
        if moto_p.poll() is not None:
            why = "it exited with status %d" % moto_p.returncode
            break
        why = probe(url, tls)
        if why is None:
            break
        time.sleep(0.1)
    if why is not None:
        print("aws-host.py: moto_server did not come up on %s: %s (see %s/moto.log)" % (url, why, d),
              file=sys.stderr)
        stop()

    kms = boto3.client("kms", region_name=REGION, endpoint_url=url, verify=ca,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    k = kms.create_key(Description="kmscrypt vm tier")["KeyMetadata"]
    write_env(d, [("KC_VM_AWS_PORT", port), ("KC_AWS_ENDPOINT", "https://%s/" % GUEST_ADDR),
                  ("KC_AWS_KEY", k["Arn"]), ("KC_AWS_REGION", REGION)])
    # Until run.sh sends SIGTERM, or is gone (killed: moto must not outlive it).
    while os.getppid() == parent:
        time.sleep(1)
    stop()


def probe(url, tls):
    """None once moto answers over TLS with the test CA, else why not (yet)."""
    try:
        urllib.request.urlopen(url + "/moto-api/", timeout=1, context=tls)
        return None
    except Exception as e:  # noqa: BLE001  (not up yet, or a certificate problem: the caller reports it)
        return str(e) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
