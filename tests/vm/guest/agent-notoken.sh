# SPDX-License-Identifier: LGPL-2.1-or-later
# A configured volume whose device is LUKS2 without a kmscrypt token:
# kmscryptd marks it failed at its first attempt, logs that once, and
# `kmscrypt status` says why; it is not retried, since no wait grows a
# token (kc_attach() says -ENOKEY, not the -ENOENT of a device that is not
# there yet).  A volume whose device is missing still waits beside it.
# kcvm-programs: kmscrypt kmscryptd tests/bench/agent-mkvols tests/bench/agent-vmlib
. /kc/lib.sh
. /kc/bin/agent-vmlib

agent_key agent
kcvm_loop 20
dev=$KCVM_LOOP
head -c 32 /dev/urandom >"$KCVM_DIR/pass"
cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --key-file "$KCVM_DIR/pass" "$dev" || die "stock luksFormat failed"
cat >>"$AGENT_VOLUMES" <<EOF
plain $dev db-id=kcvm,volume-id=plain timeout=60
later PARTLABEL=kcvm-no-such-partition db-id=kcvm,volume-id=later nofail,timeout=0
EOF
kcvm_refusal_begin "$dev"

agent_start
# Ready as soon as the volume that is not nofail settled: failed, not waiting out its 60 s.
set -- $(agent_wait_ready 30)
expect_eq "volumes attached when ready" "$1 of $2" "0 of 2"
# The first retry of a waiting volume comes within about a second: give it three.
sleep 3
kmscrypt status >status || :
cat status
grep -q "^plain: failed since .*: $dev has no kmscrypt token" status ||
        die "plain is not failed for its missing token: $(cat status)"
grep -q '^later: waiting since' status || die "the volume with no device does not wait: $(cat status)"
expect_eq "attach errors logged for plain" "$(grep -c "plain: cannot attach: .*has no kmscrypt token" "$AGENT_LOG")" 1
! grep -q 'plain: cannot attach yet, retrying' "$AGENT_LOG" || die "plain was retried: $(grep plain "$AGENT_LOG")"
expect_eq "plain's header after the refusal" "$(kcvm_head_sum "$dev")" "$_kcvm_sum"
expect_eq "mappings" "$(kcvm_maps)" "$_kcvm_maps"
kcvm_no_key kmscrypt:
agent_stop
expect_eq "exit status after SIGTERM" "$AGENT_STATUS" 0
