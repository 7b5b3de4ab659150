# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A KMS that hangs (issue #8): the aws provider against a loopback
# listener that accepts every connection and never answers (busybox nc
# running `sleep` per connection), with the per-attempt timeout at 1 s and
# the deadline at 3 s.  The command fails with one line that says it timed
# out, after the deadline and not much later, and the refusal is in the
# audit chain, which verifies; format leaves its device unwritten.
# kcvm-programs: kmscrypt
# kcvm-libraries: libcurl.so.4
. /kc/lib.sh

[ -e /lib/x86_64-linux-gnu/libcurl.so.4 ] || [ -e /usr/lib/x86_64-linux-gnu/libcurl.so.4 ] ||
        skip "no libcurl.so.4 on the host to put in the guest"
kcvm_kmscrypt_env
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || die "cannot bring up the loopback interface"

# -ll: a server that keeps accepting; -e sleep: each connection is held, never answered.
nc -ll -p 18443 -e sleep 600 >/dev/null 2>nc.err &
nc_pid=$!
defer "kill $nc_pid 2>/dev/null"
i=0
until grep -q ":$(printf %04X 18443) " /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 50 ] || die "the hanging listener never listened: $(cat nc.err)"
        sleep 0.1
done

export KMSCRYPT_AWS_ALLOW_HTTP=1 AWS_ENDPOINT_URL_KMS=http://127.0.0.1:18443 \
        AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=kcvm-not-a-secret AWS_REGION=us-east-1 \
        KMSCRYPT_AWS_CONNECT_TIMEOUT_MS=1000 KMSCRYPT_AWS_TIMEOUT_MS=1000 KMSCRYPT_AWS_DEADLINE_MS=3000
key=aws:arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab

# hangs WHAT COMMAND...: fails in one line saying it timed out, within 3..10 s (start-up included).
hangs() {
        _what=$1
        shift
        _t0=$(cat /proc/uptime | cut -d' ' -f1)
        _rc=0
        "$@" >out 2>err || _rc=$?
        _t1=$(cat /proc/uptime | cut -d' ' -f1)
        _ms=$(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%d", (b - a) * 1000 }')
        [ "$_rc" != 0 ] || die "$_what: succeeded against a KMS that never answers"
        expect_eq "$_what: lines on stderr" "$(wc -l <err)" 1
        grep -qi "timed out" err || die "$_what: does not say it timed out: $(cat err)"
        [ "$_ms" -ge 2500 ] || die "$_what: gave up after $_ms ms, before the 3000 ms deadline: $(cat err)"
        [ "$_ms" -le 10000 ] || die "$_what: took $_ms ms, far past the 3000 ms deadline"
        echo "$_what: exit $_rc after $_ms ms: $(cat err)"
}

hangs "key describe" kmscrypt key describe "$key"
# format: GenerateDataKey hangs; the device is left unwritten.
kcvm_loop 20
kcvm_refusal_begin "$KCVM_LOOP"
hangs "format" kmscrypt format "$KCVM_LOOP" --key "$key" --context db-id=db-hang,volume-id=vol-hang
kcvm_refused "format with a hanging KMS" "$KCVM_LOOP" "timed out"
kmscrypt audit verify >/dev/null || die "audit chain does not verify"
expect_eq "DescribeKey records with an error" "$(grep '"operation":"DescribeKey"' "$KMSCRYPT_AUDIT_LOG" | grep -vc '"result":"ok"')" 1
