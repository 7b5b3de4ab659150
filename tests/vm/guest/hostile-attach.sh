# SPDX-License-Identifier: LGPL-2.1-or-later
# Hostile LUKS2 headers on real loop devices (issue #8): kc-hostile damages
# a good volume's header in place, and `kmscrypt attach` and the agent's
# hotplug path (kmscrypt-hotplug attach MAJ:MIN, as udev's unit runs it)
# each refuse it, or (a stale checksum on one copy) repair it from the
# other copy: a refusal leaves no mapping, no kmscrypt key in /proc/keys and
# not one sector written (kcvm_refused); a repair leaves both copies valid
# with the good JSON.  Cases that need the key or the device to be refused
# (another volume's token, a segment past the device) are here rather than
# in the host tier (tests/hostile/hostile.sh runs every case there; the
# header-level refusals libcryptsetup makes, one of which is here, are the
# same code on a file as on a block device, and the whole boot of the vm
# tier has a time budget).
# kcvm-programs: kmscrypt kmscryptd kmscrypt-hotplug tests/hostile/kc-hostile tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

kmscrypt -q key create --alias alias/hx || die "kmscrypt key create failed"
CTX=db-id=kcvm,volume-id=hx
kcvm_loop 20
dev=$KCVM_LOOP
kmscrypt -q format "$dev" --key alias/hx --context "$CTX" || die "format failed"
kcvm_loop 20
donor=$KCVM_LOOP
# The same context: only the LUKS2 digest tells the donor's token from the volume's own.
kmscrypt -q format "$donor" --key alias/hx --context "$CTX" || die "format of the donor failed"
dd if="$dev" of=good.hdr bs=32k count=1 2>/dev/null || die "cannot save the good header"
defer "dmsetup remove kcbad >/dev/null 2>&1; kcvm_mknodes"

# hostile CASE: the good header back on $dev, then CASE applied to it.
hostile() {
        dd if=good.hdr of="$dev" bs=32k count=1 conv=fsync 2>/dev/null || die "cannot restore the good header"
        kc-hostile "$1" "$dev" "$donor" || die "kc-hostile $1 failed"
}

# ---- kmscrypt attach ----
while IFS='|' read -r c want; do
        hostile "$c"
        kcvm_attach_refused "attach, $c" "$dev" "$want"
done <<EOF
json-malformed|is not a LUKS2 device
overflow-segment|smaller than its LUKS2 data offset
tokens-33|has no kmscrypt token
token-transplant|does not match the LUKS2 header
reencrypt-forged|cannot read the LUKS2 segment
EOF

# A stale checksum on the primary copy: libcryptsetup reads the secondary
# and rewrites the primary from it; the volume attaches with its own key.
hostile csum-primary
kmscrypt -q attach "$dev" --name kcbad >out 2>err || die "attach after a stale primary checksum: $(cat err)"
kcvm_mknodes
kc-hostile verify "$dev" || die "the stale primary copy was not repaired"
dd if="$dev" bs=4k skip=1 count=3 2>/dev/null >json.now
dd if=good.hdr bs=4k skip=1 count=3 2>/dev/null >json.good
cmp -s json.now json.good || die "the repaired JSON area is not the good one"
kcvm_no_key kmscrypt:
kmscrypt -q detach kcbad || die "detach failed"
kcvm_mknodes
echo "repaired as it should, stale primary checksum: attached and detached"

# ---- hotplug through the agent ----
# $dev is configured (its context expected); $donor is not, and must stay alone.
printf 'hx %s %s\n' "$dev" "$CTX" >"$AGENT_VOLUMES"
hostile json-malformed
agent_start
agent_wait_ready 60 >/dev/null
majmin() { printf '%d:%d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; }

# hotplug_refused WHAT DEVICE WANT [STATUS]: kmscrypt-hotplug attach fails
# (with STATUS, or any non-zero), says why in one line on stderr (run by
# hand, not under the journal), and the agent logs why: the line checked is
# the agent's newest one with WANT in it.
hotplug_refused() {
        kcvm_refusal_begin "$2"
        _lines=$(wc -l <"$AGENT_LOG")
        kmscrypt-hotplug attach "$(majmin "$2")" >out 2>err && st=0 || st=$?
        [ "$st" != 0 ] || die "$1: hotplug attach succeeded"
        [ -z "${4:-}" ] || expect_eq "$1: exit status" "$st" "$4"
        [ "$(wc -l <err)" = 1 ] && grep -q '^kmscrypt-hotplug: ' err ||
                die "$1: kmscrypt-hotplug did not say why in one line: $(cat err)"
        tail -n "+$((_lines + 1))" "$AGENT_LOG" | grep -F -- "$3" | tail -n 1 >err || true
        [ -s err ] || die "$1: the agent logged no '$3': $(tail -n "+$((_lines + 1))" "$AGENT_LOG")"
        kcvm_refused "$1" "$2" "$3"
}
while IFS='|' read -r c want; do
        hostile "$c"
        hotplug_refused "hotplug, configured, $c" "$dev" "$want"
done <<EOF
token-transplant|does not match the LUKS2 header
reencrypt-forged|cannot read the LUKS2 segment
EOF

# Not configured: a kmscrypt volume is refused (exit 4) and audited, whatever its header says.
hotplug_refused "hotplug, not configured, good donor" "$donor" "no entry of" 4
dd if="$donor" of=donor.hdr bs=32k count=1 2>/dev/null
kc-hostile token-oversized "$donor" || die "kc-hostile token-oversized on the donor failed"
hotplug_refused "hotplug, not configured, oversized token" "$donor" "cannot be read" 4
grep -q '"operation":"Attach".*"detail":"hotplug"' "$KMSCRYPT_AUDIT_LOG" ||
        die "no hotplug refusal in the audit log"
agent_alive || die "kmscryptd died on a hostile header"
agent_stop
