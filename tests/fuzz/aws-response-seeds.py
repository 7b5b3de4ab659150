#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus of the aws-response fuzz target (tests/fuzz/README).

    tests/fuzz/aws-response-seeds.py tests/fuzz/corpus/aws-response

KMS responses are captured from moto_server on 127.0.0.1 (GenerateDataKey,
Decrypt, ReEncrypt, DescribeKey, ScheduleKeyDeletion and its error bodies);
credential documents follow the shapes IMDS and the container endpoint
serve (as tests/aws/fake_imds.py does); then malformed variants of each.
Every seed is <selector byte>[<status byte>]<body>, the layout of
tests/fuzz/fuzz-aws-response.c.  Needs moto[server] (as tests/aws does).
"""
import base64
import importlib.util
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

# Selector bytes and status indices of fuzz-aws-response.c (parsers[], statuses[]).
GEN32, GEN64, REENC, DECRYPT, DESCRIBE, DELETION, ERROR, CONTAINER, IMDS, TOKEN, ROLE, TIME, HTTP_DATE = range(13)
STATUS = {200: 0, 400: 2, 401: 3, 403: 4, 404: 5, 429: 6, 500: 7, 503: 8, 301: 9}


def aws_tests():
    """tests/aws/test-aws-kms.py as a module: moto is started the way the aws tier starts it."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "aws", "test-aws-kms.py")
    spec = importlib.util.spec_from_file_location("test_aws_kms", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Moto:
    def __init__(self):
        aws = aws_tests()
        self.logdir = tempfile.TemporaryDirectory()
        self.port = aws.free_port()
        self.proc = aws.start_moto(self.port, self.logdir.name)

    def call(self, op, req):
        """(status, body) of one KMS JSON call; moto does not check signatures."""
        r = urllib.request.Request("http://127.0.0.1:%d/" % self.port, data=json.dumps(req).encode(), headers={
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService." + op,
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/kms/aws4_request, "
                             "SignedHeaders=host, Signature=0"})
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.logdir.cleanup()


def write(out, name, selector, body, status=None):
    head = bytes([selector]) if status is None else bytes([selector, STATUS[status]])
    with open(os.path.join(out, name), "wb") as f:
        f.write(head + (body if isinstance(body, bytes) else body.encode()))


def kms_seeds(out):
    moto = Moto()
    try:
        ctx = {"volume": "pgdata", "host": "db1"}
        _, b = moto.call("CreateKey", {"Description": "kmscrypt seed key"})
        arn = json.loads(b)["KeyMetadata"]["Arn"]
        for n, sel in ((32, GEN32), (64, GEN64)):
            st, b = moto.call("GenerateDataKey", {"KeyId": arn, "NumberOfBytes": n, "EncryptionContext": ctx})
            assert st == 200, b
            write(out, "generate-data-key-%d" % n, sel, b)
        gen = json.loads(b)
        st, b = moto.call("Decrypt", {"KeyId": arn, "CiphertextBlob": gen["CiphertextBlob"],
                                      "EncryptionContext": ctx})
        assert st == 200, b
        write(out, "decrypt", DECRYPT, b)
        st, b = moto.call("ReEncrypt", {"SourceKeyId": arn, "DestinationKeyId": arn,
                                        "CiphertextBlob": gen["CiphertextBlob"],
                                        "SourceEncryptionContext": ctx, "DestinationEncryptionContext": ctx})
        assert st == 200, b
        write(out, "re-encrypt", REENC, b)
        st, b = moto.call("DescribeKey", {"KeyId": arn})
        write(out, "describe-key-enabled", DESCRIBE, b)
        st, b = moto.call("Decrypt", {"KeyId": arn, "CiphertextBlob": gen["CiphertextBlob"],
                                      "EncryptionContext": {"volume": "other"}})
        write(out, "error-invalid-ciphertext", ERROR, b, st)
        st, b = moto.call("DescribeKey", {"KeyId": "0f0e0d0c-0000-4000-8000-000000000000"})
        write(out, "error-not-found", ERROR, b, st)
        st, b = moto.call("ScheduleKeyDeletion", {"KeyId": arn.split("/")[-1], "PendingWindowInDays": 7})
        assert st == 200, b
        write(out, "schedule-deletion", DELETION, b)
        st, b = moto.call("DescribeKey", {"KeyId": arn})
        write(out, "describe-key-pending-deletion", DESCRIBE, b)
        return gen
    finally:
        moto.stop()


def credential_doc(**over):
    doc = {"Code": "Success", "LastUpdated": "2024-05-01T11:00:00Z", "Type": "AWS-HMAC",
           "AccessKeyId": "ASIAIMDSEXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
           "Token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/=", "Expiration": "2024-05-01T17:00:00Z"}
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not None})


def synthetic_seeds(out, gen):
    blob = gen["CiphertextBlob"]
    key_arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    pt32 = base64.b64encode(bytes(range(32))).decode()
    # Malformed KMS responses: each aims at one refusal of agent/aws/response.c.
    bad = {
        "generate-bad-json": (GEN32, '{"CiphertextBlob": "%s", "Plaintext": ' % blob),
        "generate-not-object": (GEN32, '["CiphertextBlob"]'),
        "generate-plaintext-short": (GEN32, json.dumps({"CiphertextBlob": blob, "KeyId": key_arn,
                                                        "Plaintext": base64.b64encode(b"x" * 16).decode()})),
        "generate-plaintext-number": (GEN32, json.dumps({"CiphertextBlob": blob, "Plaintext": 32})),
        "generate-plaintext-bad-base64": (GEN32, json.dumps({"CiphertextBlob": blob, "Plaintext": "AAA=AAA="})),
        "generate-plaintext-nul": (GEN32, '{"CiphertextBlob": "%s", "Plaintext": "%s\\u0000AAAA"}' % (blob, pt32)),
        "generate-no-blob": (GEN32, json.dumps({"Plaintext": pt32, "KeyId": key_arn})),
        "generate-blob-too-big": (GEN32, json.dumps({"CiphertextBlob": base64.b64encode(b"b" * 6145).decode(),
                                                     "Plaintext": pt32})),
        "generate-key-id-too-long": (GEN32, json.dumps({"CiphertextBlob": blob, "Plaintext": pt32,
                                                        "KeyId": key_arn[:-36] + "a" * 65})),
        "generate-key-id-newline": (GEN32, json.dumps({"CiphertextBlob": blob, "Plaintext": pt32,
                                                       "KeyId": key_arn + "\n"})),
        "decrypt-empty-plaintext": (DECRYPT, json.dumps({"Plaintext": "", "KeyId": key_arn})),
        "decrypt-key-id-object": (DECRYPT, json.dumps({"Plaintext": pt32, "KeyId": {"Arn": key_arn}})),
        "re-encrypt-blob-whitespace": (REENC, json.dumps({"CiphertextBlob": blob[:8] + " " + blob[9:]})),
        "describe-no-metadata": (DESCRIBE, json.dumps({"Arn": key_arn})),
        "describe-arn-too-long": (DESCRIBE, json.dumps({"KeyMetadata": {"Arn": key_arn + "x" * 300}})),
        "describe-date-huge": (DESCRIBE, json.dumps({"KeyMetadata": {"Arn": key_arn, "CreationDate": 1e300}})),
        "describe-date-string": (DESCRIBE, json.dumps({"KeyMetadata": {"Arn": key_arn,
                                                                       "CreationDate": "2024-05-01"}})),
        "describe-description-escape": (DESCRIBE, json.dumps({"KeyMetadata": {
            "Arn": key_arn, "KeyState": "PendingImport", "Description": "\x1b[2Jcleared" + "\u00e9" * 200}})),
        "deletion-date-negative": (DELETION, json.dumps({"KeyId": key_arn, "DeletionDate": -1.5})),
        "deletion-date-absent": (DELETION, json.dumps({"KeyId": key_arn})),
    }
    for name, (sel, body) in bad.items():
        write(out, name, sel, body)
    errors = {
        "error-invalid-state": (400, '{"__type": "KMSInvalidStateException", "message": "pending deletion"}'),
        "error-throttling": (400, '{"__type": "ThrottlingException", "message": "Rate exceeded"}'),
        "error-namespaced": (400, '{"__type": "com.amazonaws.kms#DisabledException", "Message": "disabled"}'),
        "error-no-type": (403, '{"message": "The security token included in the request is invalid"}'),
        "error-html": (503, "<html><body>Service Unavailable</body></html>"),
        "error-empty": (500, ""),
        "error-type-control": (400, '{"__type": "Not\\nFound\\u0007Exception", "message": "a\\rb"}'),
        "error-type-number": (429, '{"__type": 42}'),
    }
    for name, (status, body) in errors.items():
        write(out, name, ERROR, body, status)
    creds = {
        "imds-credentials": (IMDS, 200, credential_doc()),
        "container-credentials": (CONTAINER, 200, credential_doc(Code=None, LastUpdated=None, Type=None,
                                                                 Expiration="2024-05-01T17:00:00.123Z")),
        "container-long-term": (CONTAINER, 200, credential_doc(Code=None, Token=None, Expiration=None)),
        "imds-not-success": (IMDS, 200, credential_doc(Code="AssumeRoleUnauthorizedAccess")),
        "imds-http-404": (IMDS, 404, "Not Found"),
        "imds-no-secret": (IMDS, 200, credential_doc(SecretAccessKey=None)),
        "imds-token-crlf": (IMDS, 200, credential_doc(Token="abc\r\nX-Injected: 1")),
        "imds-expiration-feb-31": (IMDS, 200, credential_doc(Expiration="2024-02-31T12:00:00Z")),
        "imds-expiration-offset": (IMDS, 200, credential_doc(Expiration="2024-05-01T17:00:00+01:00")),
        "container-empty-key-id": (CONTAINER, 200, credential_doc(AccessKeyId="")),
        "container-key-id-number": (CONTAINER, 200, credential_doc(AccessKeyId=12345)),
        "imds-session-token": (TOKEN, 200, "AQAEAEXAMPLEsessionTOKEN-_=\n"),
        "imds-session-token-refused": (TOKEN, 403, "forbidden"),
        "imds-session-token-header": (TOKEN, 200, "tok\r\nX-Injected: 1"),
        "imds-role": (ROLE, 200, "kmscrypt-role\n"),
        "imds-role-two-lines": (ROLE, 200, "kmscrypt-role\nsecond-role\n"),
        "imds-role-path": (ROLE, 200, "../../user-data"),
        "imds-role-none": (ROLE, 404, ""),
    }
    for name, (sel, status, body) in creds.items():
        write(out, name, sel, body, status)
    times = {
        "time-z": "2024-05-01T12:00:00Z",
        "time-fraction": "2024-05-01T12:00:00.123456Z",
        "time-offset": "2024-05-01T12:00:00+00:00",
        "time-leap-day": "2024-02-29T23:59:59Z",
        "time-not-leap": "2023-02-29T00:00:00Z",
        "time-year-9999": "9999-12-31T23:59:59Z",
        "time-before-epoch": "1969-12-31T23:59:59Z",
        "time-leading-space": " 2024-05-01T12:00:00Z",
        "time-hour-24": "2024-05-01T24:00:00Z",
        "time-local": "2024-05-01T12:00:00",
    }
    dates = {
        "http-date": "Wed, 01 May 2024 12:00:00 GMT",
        "http-date-leap-day": "Thu, 29 Feb 2024 23:59:59 GMT",
        "http-date-rfc850": "Wednesday, 01-May-24 12:00:00 GMT",
        "http-date-asctime": "Wed May  1 12:00:00 2024",
    }
    for selector, texts in ((TIME, times), (HTTP_DATE, dates)):
        for name, text in texts.items():
            write(out, name, selector, text)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fuzz/corpus/aws-response"
    os.makedirs(out, exist_ok=True)
    gen = kms_seeds(out)
    synthetic_seeds(out, gen)


if __name__ == "__main__":
    main()
