# Scenarios a-e of issue #6, sourced by guest.sh: one phase_* per boot.
#   setup   (disks pgdata, hot1, hot2, hot3 at boot) create a CMK, format the four
#           volumes, move PostgreSQL onto pgdata, write volumes + fstab
#   main    a: pgdata attached and mounted at boot, PostgreSQL on it;
#           pgbench table and its checksum; b: hot-add hot1 (allowed) and
#           hot2 (context not allowed); c: hot-remove hot1
#   reboot  d: PostgreSQL back with the same checksum; then hide the keystore
#           and make pgdata nofail for the next boot
#   outage  e: boot completes without pgdata, status says why, restoring
#           the keystore attaches it without a reboot; hot1, not nofail,
#           fails once, after the agent's start round, not after two;
#           f: revocation (revoke=suspend and keep) under systemd's agent,
#           across its restart
#   initrdprep  (disks pgdata, early) format early with x-initrd.attach and
#           build two images: Debian's initramfs (initramfs-tools) with our
#           hook, and a dracut one with our module
#   initrd  booted from the initramfs-tools image: early was attached there
#           (by the CLI), before switch-root, and the real root's agent took
#           it over
#   dracut  the same from the dracut image (systemd in the initramfs; the
#           agent attaches there)
# shellcheck shell=sh
ctx_pg=db-id=systest,volume-id=pgdata
# The local KMS's keystore; "unavailable" is its root key gone (as when the
# root key comes from a credential or a disk that is not there at boot):
# moving the whole folder would not do, the local KMS creates a missing one.
rootkey=/var/lib/kmscrypt/keystore/root.key
pgmain=/var/lib/postgresql

# A broken install (wrong sbindir, a missing library) is a failure of the
# phase, never a skip that would let the tier pass without running it.
need_agent() {
        has_agent && return 0
        fail "phase $phase: kmscryptd or 'kmscrypt format' is not usable in this install: $(kmscrypt format --help 2>&1 | tail -n 1)"
        return 1
}

table_sum() { psql_q "select md5(string_agg(aid||':'||abalance, ',' order by aid)) from pgbench_accounts"; }
mounted_from_mapping() { findmnt -n -o SOURCE "$pgmain" | grep -qx /dev/mapper/pgdata; }
audit_has() { grep -q "$1" /var/lib/kmscrypt/audit.log; }
audit_lines() { wc -l < /var/lib/kmscrypt/audit.log; }
# audit_since N PATTERN: a record after the first N lines matches.
audit_since() { tail -n "+$(($1 + 1))" /var/lib/kmscrypt/audit.log | grep -q "$2"; }
sum_is_saved() { [ "$(cat "$state/sum")" = "$(table_sum)" ]; }
# Print the journal of the kmscrypt units (and any given) for the host's log.
diag() {
        journalctl -b --no-pager -o cat -n 40 -u kmscryptd.service -u kmscryptd.socket \
                -u 'kmscrypt-*' "$@" 2>&1 | sed 's/^/SYSTEST-DIAG /'
}
# Exactly one dm-crypt mapping sits on the device MAJ:MIN, whatever its name.
one_mapping() { [ "$(dmsetup table --target crypt | grep -c " $1 ")" -eq 1 ]; }
journal_has() { journalctl -b --no-pager -o cat | grep -q "$1"; }
# contains TEXT PART: TEXT holds PART (its own line for check to show otherwise).
contains() { case $1 in *"$2"*) return 0 ;; esac; echo "$1"; return 1; }

phase_setup() {
        need_agent || return 0
        check "create CMK" kmscrypt key create --alias alias/systest
        # Formatted with a recovery keyslot: without any keyslot the header
        # records no key size and attach refuses the unwrapped key (reported).
        printf 'systest-recovery' > /root/recovery
        rec="--recovery-passphrase-file /root/recovery --pbkdf pbkdf2 --pbkdf-force-iterations 1000"
        check "format pgdata" kmscrypt format "$(disk pgdata)" $rec --key alias/systest --context "$ctx_pg"
        check "format hot1" kmscrypt format "$(disk hot1)" $rec --key alias/systest --context db-id=systest,volume-id=hot1
        check "format hot2" kmscrypt format "$(disk hot2)" $rec --key alias/systest --context db-id=other,volume-id=rogue
        check "format hot3" kmscrypt format "$(disk hot3)" $rec --key alias/systest --context db-id=stray,volume-id=stray
        u_pg=$(blkid -s UUID -o value "$(disk pgdata)")
        u_h1=$(blkid -s UUID -o value "$(disk hot1)")
        u_h2=$(blkid -s UUID -o value "$(disk hot2)")
        mkdir -p /etc/kmscrypt
        # hot2 is configured, but for a different context than its token
        # carries; hot3 is a kmscrypt volume no entry names.
        cat > /etc/kmscrypt/volumes <<V
pgdata  UUID=$u_pg  $ctx_pg                          timeout=60
hot1    UUID=$u_h1  db-id=systest,volume-id=hot1     hotplug=yes,nofail
hot2    UUID=$u_h2  db-id=systest,volume-id=hot2     hotplug=yes,nofail
V
        mkdir -p /run/systest-gen
        check "generator accepts the volumes file" /lib/systemd/system-generators/kmscrypt-generator /run/systest-gen
        systemctl daemon-reload
        # The generated unit attaches through the agent (socket-activated).
        check "kmscrypt-pgdata.service attaches pgdata" systemctl start kmscrypt-pgdata.service
        if ! test -b /dev/mapper/pgdata; then
                diag
                kmscrypt dump --json "$(disk pgdata)" 2>&1 | grep 'KeySize' | sed 's/^/SYSTEST-DIAG dump: /'
        fi
        check "mkfs on pgdata" mkfs.ext4 -q /dev/mapper/pgdata
        # The wrapper unit's stop does not wait for the cluster's own unit.
        systemctl stop postgresql.service 'postgresql@*.service'
        mkdir -p /mnt/pg
        check "mount pgdata" mount /dev/mapper/pgdata /mnt/pg
        check "copy PostgreSQL's data onto pgdata" cp -a "$pgmain/." /mnt/pg/
        check "unmount pgdata" umount /mnt/pg
        # At once, while udev may still probe it after the unmount (deferred removal).
        check "stopping kmscrypt-pgdata.service" systemctl stop kmscrypt-pgdata.service
        check "... detaches pgdata" wait_for 10 not mapping pgdata
        if dmsetup info pgdata > /dev/null 2>&1; then
                { dmsetup info pgdata; grep -e pgdata -e dm- /proc/mounts; ls -l /sys/block/dm-*/holders;
                  ls -l /proc/[0-9]*/fd 2>/dev/null | grep -e dm- -e mapper; } 2>&1 | sed 's/^/SYSTEST-DIAG /'
                diag
        fi
        echo "/dev/mapper/pgdata $pgmain ext4 defaults 0 2" >> /etc/fstab
}

phase_main() {
        need_agent || return 0
        # a
        check "a: pgdata mounted at boot from /dev/mapper/pgdata" mounted_from_mapping
        check "a: PostgreSQL online" psql_q "select 1"
        check "a: no ordering cycle at boot" no_cycle
        check "a: data directory on the volume" sh -c \
                "findmnt -n -o SOURCE -T \"\$(su postgres -c 'psql -XAtqc \"show data_directory\"')\" | grep -qx /dev/mapper/pgdata"
        check "a: pgbench table" su postgres -c "pgbench -q -i -s 1 postgres"
        # pgbench -i writes the same rows every time: random transactions make
        # the checksum this database's own.
        check "a: pgbench transactions" su postgres -c "pgbench -n -t 200 postgres"
        sum=$(table_sum)
        if [ -n "$sum" ]; then echo "$sum" > "$state/sum"; pass "a: checksum $sum"; else fail "a: no checksum"; fi
        echo "SYSTEST-BENCH kmscrypt-mounted-ms $(active_ms var-lib-postgresql.mount)"
        mounted_from_mapping || diag
        # A restart of the mounted volume's unit (its stop cannot detach an open mapping) must not
        # leave a deferred removal armed, which would take the volume away at its next unmount.
        systemctl restart kmscrypt-pgdata.service > /dev/null 2>&1 || true
        check "a: restart of the mounted volume's unit: still attached, mounted, no deferred removal" sh -c \
                "dmsetup info pgdata | grep -q '^State: *ACTIVE' && ! dmsetup info pgdata | grep -qi deferred &&
                 findmnt -n -o SOURCE $pgmain | grep -qx /dev/mapper/pgdata"
        check "a: PostgreSQL still online after the unit's restart" psql_q "select 1"
        # b, and duplicate events: the hot-add's own event plus two more
        # "add" events sent at once must make exactly one mapping.
        req plug hot1
        t0=$(now_ms)
        wait_for 30 test -b "$(disk hot1)" && udevadm trigger --action=add "$(disk hot1)" &&
                udevadm trigger --action=add "$(disk hot1)"
        if wait_for 30 test -b /dev/mapper/hot1; then
                pass "b: hot-added allowed volume attached in $(($(now_ms) - t0)) ms"
        else
                fail "b: hot1 not attached 30 s after hot-add"
                diag
        fi
        udevadm settle
        dev=$(readlink -f "$(disk hot1)")
        mm=$(lsblk -dno MAJ:MIN "$dev" | tr -d ' ')
        check "b: hot-add and two repeated add events: exactly one mapping" one_mapping "$mm"
        # The unit stopped (its ExecStop detaches): two quick add events start it once.
        check "dup: stopping kmscrypt-attach@$mm detaches hot1" sh -c \
                "systemctl stop kmscrypt-attach@$mm.service && ! dmsetup info hot1"
        udevadm trigger --action=add "$dev"
        udevadm trigger --action=add "$dev"
        check "dup: two quick add events re-attach hot1" wait_for 30 test -b /dev/mapper/hot1
        udevadm settle
        check "dup: exactly one mapping after two quick add events" one_mapping "$mm"
        # Concurrent events reaching the agent at once (not deduplicated by systemd).
        check "dup: detach hot1 through the agent" kmscrypt detach hot1
        check "dup: three concurrent hotplug attaches all succeed" sh -c \
                "p=; for i in 1 2 3; do /usr/libexec/kmscrypt/kmscrypt-hotplug attach $mm & p=\"\$p \$!\"; done;
                 r=0; for x in \$p; do wait \$x || r=1; done; exit \$r"
        check "dup: exactly one mapping after three concurrent attaches" one_mapping "$mm"
        n=$(audit_lines)
        req plug hot2
        req plug hot3
        wait_for 20 test -b "$(disk hot2)"
        wait_for 20 test -b "$(disk hot3)"
        udevadm settle
        wait_for 20 audit_since "$n" "stray"
        wait_for 20 audit_since "$n" "rogue"
        check "b: volume with a context not allowed is not attached" not test -b /dev/mapper/hot2
        check "b: the refusal is in the journal" journal_has "rogue"
        check "b: the refusal is in the audit log" audit_since "$n" '"operation":"Attach".*rogue'
        check "b: unconfigured kmscrypt volume is not attached" not test -b /dev/mapper/stray
        check "b: its refusal is in the audit log" audit_since "$n" '"operation":"Attach".*stray.*"detail":"hotplug"'
        check "b: the audit chain verifies" kmscrypt audit verify
        # A block copy of hot3's header beside it: UUID= names neither.
        u_h3=$(blkid -s UUID -o value "$(disk hot3)")
        dd if="$(disk hot3)" of=/root/hot3-copy.img bs=1M count=1 status=none
        copy=$(losetup -f --show /root/hot3-copy.img)
        udevadm settle
        check "dup-uuid: udev lists both devices that claim the by-uuid link" sh -c \
                "[ \$(ls /run/udev/links/*by-uuid*$u_h3/ | grep -c '^b') -eq 2 ]"
        said=$(kmscrypt attach "UUID=$u_h3" 2>&1); rc=$?
        check "dup-uuid: attach by a UUID two devices carry is refused" test "$rc" -ne 0
        check "dup-uuid: the refusal says so" contains "$said" "2 devices carry UUID=$u_h3"
        check "dup-uuid: and names the copy" contains "$said" "$copy"
        said=$(KMSCRYPT_AGENT_SOCKET=/run/kmscrypt/none kmscrypt attach "UUID=$u_h3" 2>&1)
        check "dup-uuid: the same without the agent" contains "$said" "2 devices carry UUID=$u_h3"
        echo "SYSTEST-DIAG dup-uuid: udev's list of the link's claimants:" /run/udev/links/*by-uuid*"$u_h3" \
                "$(ls /run/udev/links/*by-uuid*"$u_h3"/ | tr '\n' ' ')"
        losetup -d "$copy"
        rm -f /root/hot3-copy.img
        # c
        req unplug hot1
        check "c: hot1 disk removed" wait_for 20 not test -b "$dev"
        check "c: no stale hot1 mapping" wait_for 20 not mapping hot1
        diag
        req unplug hot2
        req unplug hot3
}

phase_reboot() {
        need_agent || return 0
        check "d: pgdata mounted after reboot" mounted_from_mapping
        check "d: no ordering cycle at boot" no_cycle
        no_cycle || journalctl -b --no-pager -o cat | grep -A12 "ordering cycle" | head -n 30 | sed 's/^/SYSTEST-DIAG /'
        check "d: checksum unchanged" sum_is_saved
        check "d: systemctl status shows the agent's count" sh -c \
                'systemctl show -P StatusText kmscryptd.service | grep -Eq "^[0-9]+ of [0-9]+ volumes attached"'
        # The shutdown that ended the last boot: pgdata's disk's kmscrypt-attach@ unit, not ordered
        # against the mount, stops while pgdata may still be mounted and then leaves it to
        # kmscrypt-pgdata.service, which stops after the unmount and detaches it.  No unit failed to stop.
        journalctl -b -1 --no-pager -o cat | sed -n '/^Stopped target multi-user.target/,$p' > "$state/last-shutdown.journal"
        check "d: last shutdown: journal kept" test -s "$state/last-shutdown.journal"
        check "d: last shutdown: no kmscrypt unit failed to stop" not grep -Eq \
                'kmscrypt-.*Control process exited|detaching .* failed' "$state/last-shutdown.journal"
        grep -E 'kmscrypt-.*Control process exited|detaching .* failed' "$state/last-shutdown.journal" |
                sed 's/^/SYSTEST-DIAG last shutdown: /'
        check "d: last shutdown: pgdata detached" grep -q '^pgdata detached$' "$state/last-shutdown.journal"
        # Prepare e: pgdata becomes nofail, the keystore's root key goes away.
        sed -i 's/timeout=60$/timeout=0,nofail/' /etc/kmscrypt/volumes
        # nofail in fstab too, with a short device timeout: PostgreSQL needs the
        # mount (RequiresMountsFor=), and the boot should not wait 90 s for it.
        sed -i "s|^/dev/mapper/pgdata $pgmain ext4 defaults|/dev/mapper/pgdata $pgmain ext4 defaults,nofail,x-systemd.device-timeout=5s|" /etc/fstab
        mv "$rootkey" /root/root.key.away
        # And hot1 (its disk at boot too) a volume that is not nofail, with a timeout.
        sed -i 's/^\(hot1 .*\)hotplug=yes,nofail$/\1hotplug=yes,timeout=20/' /etc/kmscrypt/volumes
}

phase_outage() {
        need_agent || return 0
        check "e: boot completed without the keystore" systemctl is-active multi-user.target
        check "e: no ordering cycle at boot" no_cycle
        check "e: pgdata not attached" not mapping pgdata
        kmscrypt status > "$state/status.txt" 2>&1
        sed 's/^/SYSTEST-DIAG status: /' "$state/status.txt"
        check "e: status says pgdata waits and why" grep -qi "pgdata.*wait.*keystore" "$state/status.txt"
        systemctl show -P StatusText kmscryptd.service | sed 's/^/SYSTEST-DIAG StatusText: /'
        check "e: systemctl status says so too" sh -c \
                'systemctl show -P StatusText kmscryptd.service | grep -Eqi "[0-9]+ waiting \(pgdata: .*keystore"'
        # hot1 (not nofail, timeout=20): the agent's start round gave up; its unit, which starts once
        # the agent is ready (after that round), gets that verdict, not a second round of its own.
        check "e: hot1's unit failed" wait_for 60 systemctl is-failed kmscrypt-hot1.service
        # (Not when it never ran its helper: both timestamps 0.)
        ran=$(systemctl show -P ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic kmscrypt-hot1.service |
                awk 'NR == 1 { s = $1 } NR == 2 && s > 0 && $1 >= s { printf "%d\n", ($1 - s) / 1000 }')
        check "e: ... at once with the start round's verdict (ran ${ran:-?} ms, timeout=20 s)" test "${ran:-99999}" -lt 10000
        sed -i 's/^\(hot1 .*\)hotplug=yes,timeout=20$/\1hotplug=yes,nofail/' /etc/kmscrypt/volumes
        systemctl daemon-reload
        mv /root/root.key.away "$rootkey"
        t0=$(now_ms)
        if wait_for 90 test -b /dev/mapper/pgdata; then
                pass "e: keystore back, pgdata attached after $(($(now_ms) - t0)) ms without reboot"
                check "e: ... and systemctl status no longer says it waits" wait_for 10 sh -c \
                        '! systemctl show -P StatusText kmscryptd.service | grep -q "waiting (pgdata"'
        else
                fail "e: pgdata not attached 90 s after the keystore came back"
                systemctl status --no-pager -n 0 kmscryptd.service 2>&1 | sed 's/^/SYSTEST-DIAG /'
                diag
        fi
        systemctl start "$(systemd-escape -p --suffix=mount $pgmain)" postgresql
        check "e: PostgreSQL back with its rows" sum_is_saved
        # pgdata as it was before e, for the boots after: a mount with a 5 s device timeout
        # gives up before the agent has attached it (nofail: it is not tried again).
        sed -i 's/timeout=0,nofail$/timeout=60/' /etc/kmscrypt/volumes
        sed -i "s|^/dev/mapper/pgdata $pgmain ext4 defaults,nofail,x-systemd.device-timeout=5s|/dev/mapper/pgdata $pgmain ext4 defaults|" /etc/fstab
        scenario_revoke
}

# ---- f: revocation under systemd's agent.  hot1 revoke=suspend, pgdata keep
# (the default), both under alias/systest.  The unit's KeyringMode=private
# gives the agent a session keyring that does not link root's user keyring,
# where the agent's kernel mark of a suspension goes: the mark must still do
# for an agent restarted after its file was lost. ----
dm_suspended() { dmsetup info "$1" | grep -q '^State: *SUSPENDED'; }
dm_active() { dmsetup info "$1" | grep -q '^State: *ACTIVE'; }
hot1_mark=kmscrypt:suspended:hot1:/var/lib/kmscrypt
scenario_revoke() {
        dropin=/etc/systemd/system/kmscryptd.service.d/systest-revoke.conf
        mkdir -p "${dropin%/*}"
        printf '[Service]\nExecStart=\nExecStart=/usr/sbin/kmscryptd --revoke-interval 2\n' > "$dropin"
        sed -i 's/^\(hot1 .*\)hotplug=yes,nofail$/\1hotplug=yes,nofail,revoke=suspend/' /etc/kmscrypt/volumes
        systemctl daemon-reload
        check "f: agent restarted, checking CMKs every 2 s" systemctl restart kmscryptd.service
        check "f: hot1 (revoke=suspend) attached by attach --all" sh -c "kmscrypt attach --all && test -b /dev/mapper/hot1"
        n=$(audit_lines)
        check "f: data written to hot1" sh -c "head -c 4M /dev/urandom > $state/hot1.data &&
                dd if=$state/hot1.data of=/dev/mapper/hot1 bs=1M oflag=direct 2> /dev/null"
        check "f: CMK disabled" kmscrypt key disable alias/systest
        check "f: hot1 suspended" wait_for 30 dm_suspended hot1
        check "f: status: hot1 suspended, key wiped" wait_for 10 sh -c "kmscrypt status hot1 | grep -q 'suspended.*key wiped'"
        check "f: the suspension marked in root's user keyring" keyctl search @u user "$hot1_mark"
        check "f: pgdata kept running (revoke=keep)" dm_active pgdata
        check "f: PostgreSQL online under the disabled CMK" psql_q "select 1"
        check "f: audit: SuspendVolume of hot1" audit_since "$n" '"operation":"SuspendVolume".*"volume-id":"hot1"'
        check "f: audit: KeepVolume of pgdata" wait_for 10 audit_since "$n" '"operation":"KeepVolume".*"volume-id":"pgdata"'
        # The file mark lost (as to a full /var): the kernel's copy alone tells the new agent.
        rm -f /var/lib/kmscrypt/suspended/hot1
        check "f: agent restarted while hot1 is suspended" systemctl restart kmscryptd.service
        # hot2's UUID= names no disk here, so the agent scans for it: a scan that read the suspended
        # hot1 hung the agent in the kernel, and its stop ran into systemd's timeouts, SIGKILL and all.
        check "f: ... the old agent stopped at its SIGTERM" not journal_has "kmscryptd.service: State 'stop-sigterm' timed out"
        check "f: the new agent knows the suspension for its own" wait_for 30 \
                journal_has "hot1: suspended with its key wiped by the revocation policy before this agent started"
        check "f: hot1 stays suspended while its CMK is disabled" dm_suspended hot1
        check "f: CMK enabled again" kmscrypt key enable alias/systest
        check "f: hot1 resumed" wait_for 30 dm_active hot1
        check "f: hot1's data intact after the resume (read past the page cache)" sh -c \
                "dd if=/dev/mapper/hot1 bs=1M count=4 iflag=direct 2> /dev/null | cmp - $state/hot1.data"
        check "f: audit: ResumeVolume of hot1" audit_since "$n" '"operation":"ResumeVolume".*"volume-id":"hot1"'
        check "f: no mark left in the keyring" not keyctl search @u user "$hot1_mark"
        check "f: PostgreSQL still online" psql_q "select 1"
        dm_active hot1 || diag
        rm -f "$dropin"
        sed -i 's/^\(hot1 .*\),revoke=suspend$/\1/' /etc/kmscrypt/volumes
        systemctl daemon-reload
}

# ---- early boot: an x-initrd.attach volume and Debian's own initramfs ----
ctx_early=db-id=systest,volume-id=early
early_mounted() { [ "$(findmnt -n -o SOURCE /srv/early)" = /dev/mapper/early ]; }
# A Decrypt of the early volume's key in the audit log $1 (after its first $2 lines).
early_decrypt_in() {
        tail -n "+$((${2:-0} + 1))" "$1" | grep '"operation":"Decrypt"' | grep -q '"volume-id":"early"'
}
in_image() { grep -Eq "$1" "$state/initrd.list"; }
# The exit status and output of the dracut run phase_initrdprep started.
dracut_built() {
        wait "$dracut_pid"
        dracut_rc=$?
        cat "$state/dracut.out"
        return $dracut_rc
}

phase_initrdprep() {
        need_agent || return 0
        rec="--recovery-passphrase-file /root/recovery --pbkdf pbkdf2 --pbkdf-force-iterations 1000"
        check "format early" kmscrypt format "$(disk early)" $rec --key alias/systest --context "$ctx_early"
        echo "early  UUID=$(blkid -s UUID -o value "$(disk early)")  $ctx_early  x-initrd.attach" >> /etc/kmscrypt/volumes
        echo "initramfs-keystore = yes" >> /etc/kmscrypt/kmscrypt.conf
        systemctl daemon-reload
        check "kmscrypt-early.service attaches early" systemctl start kmscrypt-early.service
        mkdir -p /srv/early
        check "a file system with data on early" sh -c "mkfs.ext4 -q /dev/mapper/early && mount /dev/mapper/early /srv/early &&
                head -c 4M /dev/urandom > /srv/early/data && cd /srv/early && sha256sum data > $state/early.sum && cd / && umount /srv/early"
        check "stopping kmscrypt-early.service detaches early" sh -c \
                "systemctl stop kmscrypt-early.service && for i in \$(seq 50); do dmsetup info early > /dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1"
        echo "/dev/mapper/early /srv/early ext4 defaults 0 2" >> /etc/fstab
        # Only the modules this guest needs, and gzip: both quick under emulation.
        printf 'MODULES=dep\nCOMPRESS=gzip\n' > /etc/initramfs-tools/conf.d/systest
        audit_lines > "$state/audit-lines"
        # dracut beside it (dracut-core does not replace initramfs-tools): host-only, as distributions
        # build it.  Each build takes minutes under emulation, so the two run at once, a vCPU each;
        # their temporary folders and images are apart.
        dimg=/boot/initrd-dracut.img
        dracut -q -f --hostonly --no-hostonly-cmdline --gzip --kver "$(uname -r)" "$dimg" > "$state/dracut.out" 2>&1 &
        dracut_pid=$!
        img=/boot/initrd.img-$(uname -r)
        check "update-initramfs builds Debian's initramfs with the kmscrypt hook" update-initramfs -c -k "$(uname -r)"
        lsinitramfs "$img" > "$state/initrd.list" 2>&1
        check "image: the CLI and both boot scripts" sh -c "grep -Eq 'sbin/kmscrypt\$' $state/initrd.list &&
                grep -q 'scripts/local-top/kmscrypt\$' $state/initrd.list && grep -q 'scripts/local-block/kmscrypt\$' $state/initrd.list"
        check "image: the volumes file and dm-crypt" sh -c "grep -q 'etc/kmscrypt/volumes\$' $state/initrd.list &&
                grep -q 'dm-crypt.ko' $state/initrd.list"
        check "image: the keystore's root key (initramfs-keystore = yes)" in_image 'kmscrypt/keystore/root\.key$'
        check "image: no audit log or chain head" not in_image 'audit\.(log|head)$'
        check "image: readable by root alone (the conf-hook's UMASK)" sh -c "[ \"\$(stat -c %a $img)\" = 600 ]"

        img=$dimg
        check "dracut builds an image with the kmscrypt module" dracut_built
        lsinitrd "$img" > "$state/initrd.list" 2>&1
        check "dracut image: the kmscrypt module" grep -qx kmscrypt "$state/initrd.list"
        check "dracut image: agent, CLI, generator, socket enabled" sh -c "grep -Eq 'sbin/kmscryptd\$' $state/initrd.list &&
                grep -Eq 'sbin/kmscrypt\$' $state/initrd.list && grep -q 'system-generators/kmscrypt-generator\$' $state/initrd.list &&
                grep -q 'sockets.target.wants/kmscryptd.socket' $state/initrd.list"
        check "dracut image: the keystore's root key" in_image 'kmscrypt/keystore/root\.key'
        check "dracut image: no audit log or chain head" not in_image 'kmscrypt/audit\.(log|head)'
        check "dracut image: readable by root alone" sh -c "[ \"\$(stat -c %a $img)\" = 600 ]"
}

# early_boot_checks EXE: early was attached in the initramfs by EXE (the CLI, or the agent).
early_boot_checks() {
        bootid=$(tr -d - < /proc/sys/kernel/random/boot_id)
        kept=/var/lib/kmscrypt/initrd-audit-$bootid
        check "early: attached in the initramfs (its Decrypt in the initramfs's audit chain)" \
                early_decrypt_in /run/kmscrypt/initrd-audit.log
        early_decrypt_in /run/kmscrypt/initrd-audit.log ||
                journalctl -b --no-pager -o short-monotonic | grep -i -e kmscrypt -e early | head -n 40 |
                sed 's/^/SYSTEST-DIAG /'
        check "early: by ${1##*/}" sh -c "grep '\"operation\":\"Decrypt\"' /run/kmscrypt/initrd-audit.log |
                grep -q '\"exe\":\"$1\"'"
        check "early: that chain kept on the real root" wait_for 20 test -s "$kept.log"
        check "early: the kept chain verifies" sh -c "test -s '$kept.head' &&
                KMSCRYPT_AUDIT_HEAD='$kept.head' kmscrypt audit verify --audit-log '$kept.log'"
        check "early: the real root's agent made no second unwrap" not early_decrypt_in /var/lib/kmscrypt/audit.log "$(cat "$state/audit-lines")"
        check "early: kmscrypt-early.service found it attached" journal_has "already attached as /dev/mapper/early"
        check "early: one mapping" sh -c "[ \"\$(dmsetup table --target crypt | grep -c '^early:')\" -eq 1 ]"
        check "early: mounted at boot from /dev/mapper/early" early_mounted
        check "early: its data intact" sh -c "cd /srv/early && sha256sum -c --quiet $state/early.sum"
        check "early: no kmscrypt key left in a keyring" not grep -q kmscrypt /proc/keys
        check "early: kmscrypt status reports it" sh -c "kmscrypt status early | grep -q early"
        # After phase e its mount is nofail: the boot does not wait for it.
        check "pgdata still attached and mounted by the real root" wait_for 60 mounted_from_mapping
        mounted_from_mapping || systemctl status --no-pager -n 10 kmscrypt-pgdata.service \
                "$(systemd-escape -p --suffix=mount $pgmain)" 2>&1 | sed 's/^/SYSTEST-DIAG /'
        check "no ordering cycle at boot" no_cycle
        early_mounted || { diag; journalctl -b --no-pager -o cat | grep -i -e kmscrypt -e early | tail -n 30 | sed 's/^/SYSTEST-DIAG /'; }
        # The next phase's baseline: this root's records so far.
        audit_lines > "$state/audit-lines"
}

phase_initrd() {
        need_agent || return 0
        early_boot_checks /usr/sbin/kmscrypt
}

phase_dracut() {
        need_agent || return 0
        early_boot_checks /usr/sbin/kmscryptd
}

# ---- boot benchmark (tests/bench/boot-bench.sh): kernel start -> database
# volume mounted, kmscrypt against systemd-cryptsetup with a key file on a
# LUKS2 keyslot of default cost.  Disks: benchk (kmscrypt), benchc (LUKS2).
phase_benchsetup() {
        need_agent || return 0
        check "create CMK" kmscrypt key create --alias alias/bench
        printf 'bench-recovery' > /root/recovery
        check "format kmscrypt volume" kmscrypt format "$(disk benchk)" --recovery-passphrase-file /root/recovery --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key alias/bench --context db-id=bench,volume-id=pgdata
        head -c 64 /dev/urandom > /etc/bench.key
        chmod 0400 /etc/bench.key
        check "format LUKS2 volume (key file, default cost)" cryptsetup luksFormat -q --type luks2 \
                --key-file /etc/bench.key "$(disk benchc)"
        uk=$(blkid -s UUID -o value "$(disk benchk)")
        uc=$(blkid -s UUID -o value "$(disk benchc)")
        mkdir -p /etc/kmscrypt
        echo "pgdata UUID=$uk db-id=bench,volume-id=pgdata" > /etc/kmscrypt/volumes
        systemctl daemon-reload
        check "attach kmscrypt volume" systemctl start kmscrypt-pgdata.service
        check "open LUKS2 volume" cryptsetup open --key-file /etc/bench.key "UUID=$uc" pgc
        # The wrapper unit's stop does not wait for the cluster's own unit.
        systemctl stop postgresql.service 'postgresql@*.service'
        for m in pgdata pgc; do
                mkfs.ext4 -q "/dev/mapper/$m" && mkdir -p /mnt/$m && mount "/dev/mapper/$m" /mnt/$m &&
                        cp -a "$pgmain/." /mnt/$m/ && umount /mnt/$m
        done
        systemctl stop kmscrypt-pgdata.service
        cryptsetup close pgc
        echo "pgc UUID=$uc /etc/bench.key luks" > /etc/crypttab.bench
        echo "/dev/mapper/pgdata $pgmain ext4 defaults 0 2" >> /etc/fstab
}

# Boot with kmscrypt; then switch fstab and crypttab to systemd-cryptsetup.
phase_benchk() {
        need_agent || return 0
        check "kmscrypt volume mounted at boot" mounted_from_mapping
        echo "SYSTEST-BENCH kmscrypt $(active_ms "$(systemd-escape -p --suffix=mount $pgmain)")"
        mv /etc/kmscrypt/volumes /etc/kmscrypt/volumes.bench
        mv /etc/crypttab.bench /etc/crypttab
        # The second boot is a host without kmscrypt: no udev rule, no agent.
        ln -sf /dev/null /etc/udev/rules.d/90-kmscrypt.rules
        systemctl mask kmscryptd.socket kmscryptd.service > /dev/null 2>&1
        sed -i "s|^/dev/mapper/pgdata |/dev/mapper/pgc |" /etc/fstab
}

phase_benchc() {
        need_agent || return 0
        check "LUKS2 volume mounted at boot by systemd-cryptsetup" sh -c \
                "findmnt -n -o SOURCE $pgmain | grep -qx /dev/mapper/pgc"
        echo "SYSTEST-BENCH systemd-cryptsetup $(active_ms "$(systemd-escape -p --suffix=mount $pgmain)")"
}
