#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Independent re-computation of the published test vectors.

Recomputes, from their inputs, the canonical encryption contexts of
docs/encryption-context.md and the known-answer wrapped-key blobs of
docs/wrapped-blob.md with Python and the `cryptography` package (none of
kmscrypt's code), and checks that the hex constants the C unit tests
(tests/unit/test-context.c, tests/unit/test-blob.c) compare against, and
the hex blocks the two documents publish, are exactly these.  --print shows the values.  Exits 77 (skip) without
`cryptography`.
"""
import os
import re
import struct
import sys

try:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:
    print("SKIP: python3 cryptography not installed")
    sys.exit(77)


def canonical(ctx):
    pairs = sorted((k.encode(), v.encode()) for k, v in ctx.items())
    out = b"KCX1" + struct.pack(">I", len(pairs))
    for k, v in pairs:
        out += struct.pack(">I", len(k)) + k + struct.pack(">I", len(v)) + v
    return out


def seal(cmk, key_id, version, nonce, ctx, plaintext):
    kid = key_id.encode()
    header = (b"KCW\x01" + bytes([1, len(kid)]) + kid + struct.pack(">I", version)
              + nonce + struct.pack(">I", len(plaintext)))
    return header + AESGCM(cmk).encrypt(nonce, plaintext, header + canonical(ctx))


BASIC = {"db-id": "db-CQYSMDPBRZ7BPMH7Y3RTDG5QY", "volume-id": "vol-ad8c6542"}
NON_ASCII = {"région": "Zürich", "db-id": "db-1", "Owner": "équipe données", "ключ": "значение"}

CONTEXTS = {
    "basic": BASIC,
    "colon-keys": {"aws:rds:db-id": "db-CQYSMDPBRZ7BPMH7Y3RTDG5QY", "aws:ebs:id": "vol-ad8c6542"},
    "non-ascii": NON_ASCII,
    "prefix-empty": {"db-id-2": "x", "db": "", "DB": "upper", "db-id": "db-1"},
    "escaped": {"note": "a,b=c\\d", "db-id": "db-1"},
    "empty": {},
}

CMK = bytes(range(32))
BLOBS = {
    "dek-64": ("local:kc-test-cmk", 1, "cafebabefacedbaddecaf888", BASIC, bytes(range(0x40, 0x80))),
    "empty-context": ("local:kc-test-cmk", 7, "000000000000000000000001", {}, bytes(range(32))),
    "long-id-non-ascii-context": ("aws:arn:aws:kms:eu-west-1:111122223333:key/1234abcd", 2,
                                  "0f0e0d0c0b0a090807060504", NON_ASCII, bytes(64)),
}


def c_constants(path, field):
    """name -> hex of `.name = "..."` ... `.<field> = "..." "..."` entries of a C vector table."""
    text = open(path, encoding="utf-8").read()
    out = {}
    for m in re.finditer(r'\.name = "([^"]+)".*?\.' + field + r' =((?:\s*"[0-9a-f]*")+)', text, re.S):
        out[m.group(1)] = "".join(re.findall(r'"([0-9a-f]*)"', m.group(2)))
    return out


def main():
    srcdir = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(__file__), "..", "..")
    computed = {("context", n): canonical(c).hex() for n, c in CONTEXTS.items()}
    computed.update({("blob", n): seal(CMK, k, v, bytes.fromhex(nonce), c, p).hex()
                     for n, (k, v, nonce, c, p) in BLOBS.items()})
    if "--print" in sys.argv:
        for (kind, name), value in computed.items():
            print(kind, name, value)
        return 0

    in_c = {("context", n): h for n, h in
            c_constants(os.path.join(srcdir, "tests/unit/test-context.c"), "canonical_hex").items()}
    in_c.update({("blob", n): h for n, h in
                 c_constants(os.path.join(srcdir, "tests/unit/test-blob.c"), "blob_hex").items()})
    published = set()
    for doc in ("docs/encryption-context.md", "docs/wrapped-blob.md"):
        text = open(os.path.join(srcdir, doc), encoding="utf-8").read()
        published |= {b.replace("\n", "") for b in re.findall(r"```\n([0-9a-f\n]+)```", text)}
    failed = 0
    for key, value in sorted(computed.items()):
        if value not in published:
            print("NOT PUBLISHED in docs/: %s %s %s" % (key + (value,)))
            failed += 1
    for key in sorted(set(computed) | set(in_c)):
        if computed.get(key) != in_c.get(key):
            print("MISMATCH %s %s:\n  python %s\n  C test %s" % (key + (computed.get(key), in_c.get(key))))
            failed += 1
    print("%d vectors checked, %d mismatched" % (len(computed), failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
