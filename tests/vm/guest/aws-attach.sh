# SPDX-License-Identifier: LGPL-2.1-or-later
# A volume through the aws provider (issue #9): the key is a CMK in moto on
# the host, reached over HTTPS through QEMU's user network (guestfwd to the
# host's loopback, restrict=on: nothing leaves the machine, checked by the
# host's own address being out of reach), the endpoint and the test CA from
# kmscrypt.conf.  Format, attach, write and read back,
# detach, attach again and read the data; then refusals that change
# nothing: the context attach expects, a token whose context was altered
# (KMS refuses the Decrypt), the server's certificate checked against a CA
# that did not sign it (TLS verification is real), and plain http to a host
# that is not loopback (refused before any traffic).
# kcvm-programs: kmscrypt
# kcvm-libraries: libcurl.so.4
# kcvm-host: aws
. /kc/lib.sh

kcvm_aws_up
key=aws:$KC_AWS_KEY

# restrict=on: the host itself (10.0.2.2, where moto listens behind QEMU's
# user network) is out of reach; only the forward at 10.0.2.100 answers.
command -v nc >/dev/null || die "no nc in the guest (busybox applet)"
! nc -w 2 10.0.2.2 "$KC_AWS_HOST_PORT" </dev/null >/dev/null 2>&1 ||
        die "the guest reached the host at 10.0.2.2:$KC_AWS_HOST_PORT: the user network is not restricted"
ctx=db-id=db-aws,volume-id=vol-aws
defer "dmsetup remove kcaws >/dev/null 2>&1; kcvm_mknodes"

kcvm_loop 20
dev=$KCVM_LOOP
kmscrypt -q format "$dev" --key "$key" --context "$ctx" || die "format with $key failed"
kmscrypt -q attach "$dev" --name kcaws || die "attach through the aws provider failed"
kcvm_mknodes
kcvm_roundtrip /dev/mapper/kcaws "$KCVM_LOOP_FILE" 1

# The data survives a detach: the second attach gets the key from KMS again.
kcvm_pattern data 262144
dd if=data of=/dev/mapper/kcaws bs=64k conv=fsync 2>/dev/null || die "write through kcaws failed"
kmscrypt -q detach kcaws || die "detach failed"
kcvm_mknodes
kcvm_no_key kmscrypt:
# The Decrypt response (the plaintext data key) came through OpenSSL, told
# to wipe each received TLS record once delivered; the key itself is never logged.
kmscrypt -q --verbose attach "$dev" --name kcaws 2>attach.debug || die "second attach failed: $(tail -n 3 attach.debug)"
grep -q "TLS: OpenSSL cleanses received plaintext" attach.debug ||
        die "libcurl's OpenSSL was not told to cleanse plaintext: $(grep -i 'tls\|curl' attach.debug | head -n 3)"
kcvm_mknodes
kcvm_drop_caches
dd if=/dev/mapper/kcaws of=readback bs=64k count=4 2>/dev/null || die "read through kcaws failed"
cmp -s data readback || die "the data read after a second attach differs from the data written"
kmscrypt -q detach kcaws || die "second detach failed"
kcvm_mknodes
grep -q '"operation":"Decrypt".*"result":"ok".*request-id' "$KMSCRYPT_AUDIT_LOG" ||
        die "no audit record of a Decrypt with the KMS request id: $(tail -n 1 "$KMSCRYPT_AUDIT_LOG")"
echo "formatted, attached twice and read back through $KC_AWS_ENDPOINT"

# ---- refusals ----
kcvm_attach_refused "context other than expected" "$dev" "expected {" \
        --expect-context db-id=db-aws,volume-id=vol-other

# The token's context altered: KMS itself refuses to unwrap under it.
tid=$(cryptsetup luksDump "$dev" | awk '/^Tokens:/ { t = 1 } t && /kmscrypt/ { sub(":", "", $1); print $1; exit }')
[ -n "$tid" ] || die "no kmscrypt token in the luksDump of $dev"
cryptsetup token export --token-id "$tid" "$dev" >token.json || die "token export failed"
sed 's/"vol-aws"/"vol-evil"/' token.json >evil.json
! cmp -s token.json evil.json || die "could not alter the token's context: $(cat token.json)"
cryptsetup token import --token-replace --token-id "$tid" --json-file evil.json "$dev" || die "token import failed"
kcvm_attach_refused "context altered in the token (KMS refuses)" "$dev" "InvalidCiphertextException"

# Against another CA the server's certificate does not verify.
conf=$KMSCRYPT_CONFIG
sed 's|/kc/aws/ca.pem|/kc/aws/other-ca.pem|' "$conf" >other-ca.conf
KMSCRYPT_CONFIG=$PWD/other-ca.conf
kcvm_attach_refused "endpoint certificate not signed by the CA in aws-ca-file" "$dev" "certificate"

# Plain http to 10.0.2.100 is not loopback: refused even with the flag, before any traffic.
sed 's|^aws-endpoint = .*|aws-endpoint = http://10.0.2.100/|' "$conf" >http.conf
KMSCRYPT_CONFIG=$PWD/http.conf
export KMSCRYPT_AWS_ALLOW_HTTP=1
kcvm_attach_refused "plain http to a host that is not loopback" "$dev" "loopback endpoints only"
