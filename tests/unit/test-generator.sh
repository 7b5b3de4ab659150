#!/bin/sh
# kmscrypt-generator on sample volumes files: the units, ordering, the
# symlinks that pull them in and the device timeouts it writes.
set -eu
gen=${top_builddir:-.}/kmscrypt-generator
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
has() { if grep -qx -- "$2" "$1"; then ok "${1##*/}: $2"; else bad "${1##*/} lacks '$2'"; fi; }
# hasnt FILE RE: FILE exists (a missing unit lacks everything) and has no line matching RE.
hasnt() {
        if [ ! -s "$1" ]; then bad "${1##*/} is missing or empty"
        elif grep -q -- "$2" "$1"; then bad "${1##*/} has '$2'"
        else ok "${1##*/}: no $2"; fi
}

cat > "$tmp/volumes" <<'V'
# name    device                    context                          options
pg-data   UUID=0b7e-11              db-id=db-1,volume-id=pgdata       timeout=30
wal       /dev/vdc                  db-id=db-1,volume-id=wal          nofail
remote    LABEL=far-away            db-id=db-1,volume-id=remote       _netdev,timeout=0
cloud     /dev/vde                  db-id=db-1,volume-id=cloud        kms=aws
spare     /dev/vdd                  db-id=db-1,volume-id=spare        nofail,timeout=0
V
out=$tmp/out
mkdir "$out"
KMSCRYPT_VOLUMES=$tmp/volumes "$gen" "$out" "$out" "$out"

u=$out/kmscrypt-pg\\x2ddata.service
has "$u" 'BindsTo=dev-disk-by\\x2duuid-0b7e\\x2d11.device'
has "$u" 'Before=cryptsetup.target'
# As systemd-cryptsetup does: fstab-generator orders the mount after this target.
has "$u" 'Wants=blockdev@dev-mapper-pg\\x2ddata.target'
has "$u" 'Before=blockdev@dev-mapper-pg\\x2ddata.target'
# Before local-fs-pre.target is a cycle with a separate /var (the agent's StateDirectory=).
hasnt "$u" 'local-fs-pre.target'
# timeout= and a margin for the agent's last try: its verdict ends the unit, not SIGTERM.
has "$u" 'TimeoutStartSec=60s'
has "$u" 'ExecStart=.*/kmscrypt-hotplug volume pg-data'
[ -L "$out/cryptsetup.target.requires/kmscrypt-pg\\x2ddata.service" ] && ok "local volume required by cryptsetup.target" ||
        bad "cryptsetup.target.requires link missing"
[ -L "$out/dev-mapper-pg\\x2ddata.device.requires/kmscrypt-pg\\x2ddata.service" ] && ok "mapping device requires the unit" ||
        bad "dev-mapper device link missing"
has "$out/dev-disk-by\\x2duuid-0b7e\\x2d11.device.d/50-kmscrypt-timeout.conf" 'JobRunningTimeoutSec=30s'

u=$out/kmscrypt-wal.service
hasnt "$u" '^Before=cryptsetup.target'
hasnt "$u" 'local-fs-pre.target'
has "$u" 'Before=blockdev@dev-mapper-wal.target'
[ -L "$out/cryptsetup.target.wants/kmscrypt-wal.service" ] && ok "nofail volume only wanted" || bad "nofail wants link missing"
[ -e "$out/cryptsetup.target.requires/kmscrypt-wal.service" ] && bad "nofail volume is required" || ok "nofail volume not required"
# The unit bounds the wait: a device job that gave up first would fail the mount
# (and local-fs.target) while the agent still retries.
has "$out/dev-mapper-pg\\x2ddata.device.d/50-kmscrypt-timeout.conf" 'JobTimeoutSec=infinity'
hasnt "$out/dev-mapper-pg\\x2ddata.device.d/50-kmscrypt-timeout.conf" 'JobRunningTimeoutSec'
[ -e "$out/dev-mapper-wal.device.d/50-kmscrypt-timeout.conf" ] && bad "nofail mapping device got a timeout" ||
        ok "nofail mapping device keeps the default timeout"

u=$out/kmscrypt-remote.service
has "$u" 'After=network-online.target remote-fs-pre.target'
has "$u" 'Before=remote-cryptsetup.target'
# After and before one target is an ordering cycle, which systemd breaks by dropping a job.
hasnt "$u" 'Before=.*remote-fs-pre.target'
hasnt "$u" 'local-fs-pre.target'
has "$u" 'BindsTo=dev-disk-by\\x2dlabel-far\\x2daway.device'
has "$u" 'TimeoutStartSec=infinity'
has "$u" 'Before=blockdev@dev-mapper-remote.target'
[ -L "$out/remote-cryptsetup.target.requires/kmscrypt-remote.service" ] && ok "_netdev volume under remote-cryptsetup.target" ||
        bad "remote-cryptsetup.target link missing"

# The agent is not ordered before local-fs-pre.target either.
svc=${top_builddir:-.}/contrib/systemd/kmscryptd.service
hasnt "$svc" '^[^#].*local-fs-pre.target'
hasnt "$svc" '^[^#].*cryptsetup-pre.target'
# The agent may write where the programs were built to keep state and the
# socket (localstatedir, runstatedir), not some other folder.
mk=${top_builddir:-.}/Makefile
prefix=$(sed -n 's/^prefix = //p' "$mk")
statedir=$(sed -n 's/^localstatedir = //p' "$mk" | sed "s|\${prefix}|$prefix|")/lib/kmscrypt
sockdir=$(sed -n 's/^ListenSequentialPacket=\(.*\)\/agent.sock$/\1/p' "${top_builddir:-.}/contrib/systemd/kmscryptd.socket")
has "$svc" "ReadWritePaths=-$statedir -$sockdir"
has "$svc" "RequiresMountsFor=$statedir"
hasnt "$svc" 'log/kmscrypt'
# Readiness waits for the volumes' own timeouts, which systemd's default start timeout would cut.
has "$svc" 'TimeoutStartSec=infinity'

# The whole boot transaction as systemd sees it, with the host's own
# systemd-fstab-generator and an /etc/fstab that mounts /var separately and
# a volume on /srv/pg: no ordering cycle (systemd would delete a job to break
# it: kmscryptd.service or var.mount).
fstabgen=/lib/systemd/system-generators/systemd-fstab-generator
if command -v systemd-analyze > /dev/null && [ -x "$fstabgen" ]; then
        units=$tmp/units
        mkdir "$units" "$tmp/fsgen"
        cat > "$tmp/fstab" <<'F'
/dev/vda1           /        ext4 defaults 0 1
/dev/vda3           /var     ext4 defaults 0 2
/dev/mapper/pg-data /srv/pg  ext4 defaults 0 2
/dev/mapper/wal     /srv/wal ext4 defaults,nofail 0 2
F
        SYSTEMD_FSTAB=$tmp/fstab "$fstabgen" "$tmp/fsgen" "$tmp/fsgen" "$tmp/fsgen"
        cp -r "$tmp/fsgen/." "$out/." "$units/"
        for f in kmscryptd.service kmscryptd.socket kmscrypt-initrd-audit.service kmscrypt-attach@.service; do
                # Programs that exist, so that verify looks at the ordering only.
                sed -e 's|^ExecStart=.*|ExecStart=/bin/true|' -e 's|^ExecStop=.*|ExecStop=/bin/true|' \
                        -e 's|^ExecReload=.*|ExecReload=/bin/true|' "${top_builddir:-.}/contrib/systemd/$f" > "$units/$f"
        done
        for f in "$units"/kmscrypt-*.service; do
                sed -i -e 's|^ExecStart=.*|ExecStart=/bin/true|' -e 's|^ExecStop=.*|ExecStop=/bin/true|' "$f"
        done
        SYSTEMD_UNIT_PATH=$units: systemd-analyze verify --man=no "$units/var.mount" "$units/srv-pg.mount" \
                "$units/kmscryptd.service" "$units/kmscrypt-pg\\x2ddata.service" /lib/systemd/system/local-fs.target \
                > "$tmp/verify" 2>&1 || true
        if grep -qi 'cycle' "$tmp/verify"; then bad "ordering cycle with a separate /var: $(cat "$tmp/verify")"
        else ok "systemd-analyze verify: no ordering cycle with a separate /var"; fi
        # Every setting of our units is one systemd knows, in its section (systemd only warns, then ignores it).
        cp "$units/kmscrypt-attach@.service" "$units/kmscrypt-attach@8:0.service"
        SYSTEMD_UNIT_PATH=$units: systemd-analyze verify --man=no "$units/kmscryptd.socket" \
                "$units/kmscrypt-initrd-audit.service" "$units/kmscrypt-attach@8:0.service" >> "$tmp/verify" 2>&1 || true
        if grep -E 'Unknown (key|section)|Failed to parse|Invalid|Ignoring' "$tmp/verify" | grep -q 'kmscrypt'; then
                bad "systemd ignores settings of our units: $(grep -E 'Unknown|Failed to parse|Invalid|Ignoring' "$tmp/verify")"
        else ok "systemd-analyze verify: every setting of our units understood"; fi
else
        echo "skip - systemd-analyze or $fstabgen missing: boot transaction not verified"
fi

# nofail with timeout=0: the agent retries for ever, but the device keeps
# systemd's default timeout, or a missing disk leaves a start job for ever.
[ -e "$out/dev-vdd.device.d/50-kmscrypt-timeout.conf" ] &&
        bad "nofail timeout=0: device job without end ($(cat "$out/dev-vdd.device.d/50-kmscrypt-timeout.conf"))" ||
        ok "nofail timeout=0: the device keeps the default timeout"
# ... and so does its unit, whose wait for a device or KMS that stays away would never end.
hasnt "$out/kmscrypt-spare.service" '^TimeoutStartSec='
# Not nofail, timeout=0: the unit waits as long as the agent retries.
has "$out/kmscrypt-remote.service" 'TimeoutStartSec=infinity'
# Not nofail, timeout=0: the volume is needed, its device is waited for.
has "$out/dev-disk-by\\x2dlabel-far\\x2daway.device.d/50-kmscrypt-timeout.conf" 'JobRunningTimeoutSec=infinity'

# kms= naming a remote provider waits for the network, as _netdev does.
u=$out/kmscrypt-cloud.service
has "$u" 'After=network-online.target remote-fs-pre.target'
[ -L "$out/remote-cryptsetup.target.requires/kmscrypt-cloud.service" ] && ok "kms=aws: required by remote-cryptsetup.target" ||
        bad "kms=aws: remote-cryptsetup.target.requires link missing"

# x-initrd.attach: on the real root and in the initramfs the unit is not
# stopped by umount.target (the mapping holds / or /usr); in the initramfs
# only such volumes get units.
cat > "$tmp/volumes-initrd" <<'V'
root      UUID=77aa                 db-id=db-1,volume-id=root         x-initrd.attach
data      /dev/vdb                  db-id=db-1,volume-id=data
V
for where in real initrd; do
        o=$tmp/out-$where
        mkdir "$o"
        KMSCRYPT_INITRD=$([ "$where" = initrd ] && echo 1 || echo 0) KMSCRYPT_VOLUMES=$tmp/volumes-initrd \
                "$gen" "$o" "$o" "$o"
        hasnt "$o/kmscrypt-root.service" 'umount.target'
        has "$o/kmscrypt-root.service" 'Before=blockdev@dev-mapper-root.target'
        [ -L "$o/dev-mapper-root.device.requires/kmscrypt-root.service" ] && ok "$where: root mapping requires its unit" ||
                bad "$where: dev-mapper-root.device.requires link missing"
done
has "$tmp/out-real/kmscrypt-data.service" 'Conflicts=umount.target'
[ -e "$tmp/out-initrd/kmscrypt-data.service" ] && bad "initrd: a unit for a volume without x-initrd.attach" ||
        ok "initrd: no unit for a volume without x-initrd.attach"
mkdir "$tmp/out-initrd2"
KMSCRYPT_INITRD=1 KMSCRYPT_VOLUMES=$tmp/volumes "$gen" "$tmp/out-initrd2"
[ -z "$(ls "$tmp/out-initrd2")" ] && ok "initrd: no x-initrd.attach volume, no units" ||
        bad "initrd: units without any x-initrd.attach volume: $(ls "$tmp/out-initrd2")"

# A volumes file that does not parse: no units at all, and a failure exit.
printf 'broken\n' > "$tmp/bad"
mkdir "$tmp/out2"
if KMSCRYPT_VOLUMES=$tmp/bad "$gen" "$tmp/out2" 2> "$tmp/err"; then bad "bad file accepted"; else ok "bad file refused"; fi
grep -q "$tmp/bad:1" "$tmp/err" && ok "error names file:line" || bad "error lacks file:line: $(cat "$tmp/err")"
[ -z "$(ls "$tmp/out2")" ] && ok "no units from a bad file" || bad "units written from a bad file"
# No file: nothing, success.
KMSCRYPT_VOLUMES=$tmp/none "$gen" "$tmp/out2" && ok "missing file is no volumes" || bad "missing file failed"

[ "$fails" -eq 0 ]
