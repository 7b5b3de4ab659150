#!/bin/bash
# The initramfs hooks (contrib/dracut, contrib/initramfs-tools) on sample
# configurations, with the functions dracut and initramfs-tools give them
# stubbed and their templates filled with this test's folders: nothing goes
# in without an x-initrd.attach volume; the keystore and its root key only
# when kmscrypt.conf says initramfs-keystore = yes (and, for
# initramfs-tools, the image's umask is 077); never the audit log or its
# chain head; the boot scripts and the audit chain of the initramfs.
set -u
src=${top_srcdir:-.}
bld=${top_builddir:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fails=$((fails + 1)); }
check() {
        local name=$1
        shift
        if "$@"; then ok "$name"; else bad "$name"; fi
}

etc=$tmp/etc ks=$tmp/var/keystore
mkdir -p "$etc/kmscrypt" "$tmp/bin" "$tmp/libexec/kmscrypt" "$ks/keys"
# The local keystore as kmscrypt leaves it: keys, change counter, root key, chain head beside.
echo key > "$ks/keys/0b7e.key"
: > "$ks/.lock"
head -c 32 /dev/zero > "$ks/root.key"
echo '{"seq":7}' > "$ks/audit.head"
echo '{"record":1}' > "$tmp/var/audit.log"
printf 'keystore = %s\naudit-log = %s/var/audit.log\n' "$ks" "$tmp" > "$etc/kmscrypt/no.conf"
printf 'keystore = %s\naudit-log = %s/var/audit.log\ninitramfs-keystore = yes\n' "$ks" "$tmp" > "$etc/kmscrypt/yes.conf"
printf 'keystore = %s\nfrobnicate = yes\n' "$ks" > "$etc/kmscrypt/bad.conf"
echo header > "$tmp/root.hdr"
printf 'root UUID=kmscrypt-test-root db-id=db-1,volume-id=root x-initrd.attach,header=%s/root.hdr\n' "$tmp" \
        > "$etc/kmscrypt/volumes-hdr"
printf 'data /dev/kmscrypt-test-none db-id=db-1,volume-id=data\n' > "$etc/kmscrypt/volumes-none"
printf 'data /dev/kmscrypt-test-none db-id=db-1,volume-id=data\nroot UUID=kmscrypt-test-root db-id=db-1,volume-id=root x-initrd.attach\n' \
        > "$etc/kmscrypt/volumes-root"
# The CLI the hooks run, on this test's configuration.
printf '#!/bin/sh\nKMSCRYPT_CONFIG=%s/kmscrypt/kmscrypt.conf KMSCRYPT_VOLUMES=%s/kmscrypt/volumes exec %s/kmscrypt "$@"\n' \
        "$etc" "$etc" "$(cd "$bld" && pwd)" > "$tmp/bin/kmscrypt"
chmod +x "$tmp/bin/kmscrypt"
# The boot scripts initramfs-tools runs (installed with its own, not by the hook).
boot_top=$bld/contrib/initramfs-tools/scripts/local-top/kmscrypt
boot_block=$src/contrib/initramfs-tools/scripts/local-block/kmscrypt

# fill TEMPLATE OUT: the template with this test's folders.
fill() {
        sed -e "s|@sbindir@|$tmp/bin|g" -e "s|@sysconfdir@|$etc|g" -e "s|@libexecdir@|$tmp/libexec|g" \
                -e 's|@runstatedir@|/usr/local/var/run|g' -e 's|@localstatedir@|/var|g' -e 's|@systemdgeneratordir@|/gen|g' \
                -e 's|@systemdsystemunitdir@|/units|g' -e 's|@udevrulesdir@|/rules|g' \
                -e "s|/usr/share/initramfs-tools/hook-functions|$tmp/hook-functions|" "$1" > "$2"
        chmod +x "$2"
}
fill "$src/contrib/dracut/90kmscrypt/module-setup.sh.in" "$tmp/module-setup.sh"
fill "$src/contrib/initramfs-tools/hooks/kmscrypt.in" "$tmp/hook"
fill "$src/contrib/initramfs-tools/conf-hooks.d/kmscrypt.in" "$tmp/conf-hook"
cat > "$tmp/hook-functions" <<EOF
copy_exec() { echo "copy_exec \$*" >> "$tmp/itools.log"; }
manual_add_modules() { echo "module \$1" >> "$tmp/itools.log"; }
EOF

# use CONF VOLUMES: which kmscrypt.conf and volumes file the CLI reads.
use() {
        cp "$etc/kmscrypt/$1" "$etc/kmscrypt/kmscrypt.conf"
        cp "$etc/kmscrypt/$2" "$etc/kmscrypt/volumes"
}

# The keystore pieces and the audit chain in image IMG.
has_no_secrets() {
        [ ! -e "$1$ks/root.key" ] && [ -z "$(find "$1" -name 'audit*' ! -name '*.conf')" ]
}
no_audit_chain() {
        [ -z "$(find "$1" -name 'audit.head' -o -name 'audit.log')" ]
}

# ---- dracut ----
# dracut IMG: check() and install() of the module, their status in $IMG.status, what it installed in $IMG.list.
dracut() {
        local img=$1
        rm -rf "$img" && mkdir -p "$img"
        (
                initdir=$img SYSTEMCTL=systemctl_stub
                systemctl_stub() { echo "systemctl $*" >> "$img.list"; }
                require_binaries() { return 0; }
                inst_multiple() { local f; for f; do [ "$f" = -o ] || echo "$f" >> "$img.list"; done; }
                inst_simple() { echo "$1" >> "$img.list"; }
                inst_rules() { echo "$1" >> "$img.list"; }
                dwarn() { echo "dwarn: $*" >> "$img.warn"; }
                derror() { echo "derror: $*" >> "$img.warn"; }
                . "$tmp/module-setup.sh"
                check 2> /dev/null
                echo "check $?" > "$img.status"
                install 2>> "$img.warn"
                echo "install $?" >> "$img.status"
        )
}

use no.conf volumes-none
dracut "$tmp/d1"
check "dracut, no x-initrd.attach volume: check() says 255 (only on request)" grep -qx 'check 255' "$tmp/d1.status"
check "dracut, no x-initrd.attach volume: install() adds nothing" test ! -s "$tmp/d1.list" -a -z "$(ls -A "$tmp/d1")"

use no.conf volumes-root
dracut "$tmp/d2"
check "dracut, x-initrd.attach volume: check() says 0" grep -qx 'check 0' "$tmp/d2.status"
check "dracut: install() succeeds" grep -qx 'install 0' "$tmp/d2.status"
check "dracut: agent, CLI, generator, units and configuration" \
        grep -qx "$tmp/bin/kmscryptd" "$tmp/d2.list"
check "dracut: the configuration" grep -qx "$etc/kmscrypt/volumes" "$tmp/d2.list"
check "dracut: the agent's socket enabled" grep -q '^systemctl .* enable kmscryptd.socket$' "$tmp/d2.list"
check "dracut: cryptsetup.target pulled in, with the volumes' units it requires" \
        grep -q '^systemctl .* add-wants sysinit.target cryptsetup.target$' "$tmp/d2.list"
# There every other kmscrypt volume that udev saw would be refused and audited as foreign.
check "dracut: no hotplug rule or unit in the initramfs" \
        sh -c "! grep -q '90-kmscrypt.rules\|kmscrypt-attach@' '$tmp/d2.list'"
check "dracut: the agent's audit chain in /run in the initramfs" grep -qx \
        'Environment=KMSCRYPT_AUDIT_HEAD=/run/kmscrypt/initrd-audit.head' \
        "$tmp/d2/units/kmscryptd.service.d/50-kmscrypt-initrd.conf"
check "dracut, keystore not allowed: no keystore, no root key, no audit chain" has_no_secrets "$tmp/d2"
check "dracut, keystore not allowed: a warning says the volume cannot attach" grep -q 'initramfs-keystore = yes' \
        "$tmp/d2.warn"

use yes.conf volumes-root
dracut "$tmp/d3"
check "dracut, keystore allowed: key files and change counter" test -f "$tmp/d3$ks/keys/0b7e.key" -a -e "$tmp/d3$ks/.lock"
check "dracut, keystore allowed: the root key, 0600" test "$(stat -c %a "$tmp/d3$ks/root.key" 2> /dev/null)" = 600
check "dracut, keystore allowed: the keystore folder 0700" test "$(stat -c %a "$tmp/d3$ks")" = 700
check "dracut, keystore allowed: never the audit log or its chain head" no_audit_chain "$tmp/d3"

use yes.conf volumes-none
dracut "$tmp/d4"
check "dracut, keystore allowed but no x-initrd.attach volume: nothing" test -z "$(ls -A "$tmp/d4")"

use no.conf volumes-hdr
dracut "$tmp/d5"
check "dracut: a detached header of an x-initrd.attach volume goes in" grep -qx "$tmp/root.hdr" "$tmp/d5.list"

# A mistake in kmscrypt.conf: the module is not silently left out (an image that cannot attach
# the root), its install() fails the build instead.
use bad.conf volumes-root
dracut "$tmp/d6"
check "dracut, broken kmscrypt.conf: check() still includes the module" grep -qx 'check 0' "$tmp/d6.status"
check "dracut, broken kmscrypt.conf: install() fails, saying so" \
        sh -c "grep -q '^install [1-9]' '$tmp/d6.status' && grep -q 'derror: kmscrypt' '$tmp/d6.warn'"

# ---- initramfs-tools ----
# itools IMG UMASK: the hook into DESTDIR IMG under UMASK; its status in $rc.
itools() {
        rm -rf "$1" "$tmp/itools.log" && mkdir -p "$1"
        (umask "$2" && DESTDIR=$1 "$tmp/hook" > "$1.out" 2>&1)
        rc=$?
}

use no.conf volumes-none
itools "$tmp/i1" 022
check "initramfs-tools, no x-initrd.attach volume: nothing, status 0" test "$rc" = 0 -a -z "$(ls -A "$tmp/i1")" \
        -a ! -e "$tmp/itools.log"

use no.conf volumes-root
itools "$tmp/i2" 022
check "initramfs-tools, x-initrd.attach volume: status 0" test "$rc" = 0
check "initramfs-tools: the CLI" grep -qx "copy_exec $tmp/bin/kmscrypt /sbin" "$tmp/itools.log"
check "initramfs-tools: device-mapper and cipher modules" \
        sh -c "grep -qx 'module dm_mod' '$tmp/itools.log' && grep -qx 'module dm_crypt' '$tmp/itools.log' &&
               grep -qx 'module xts' '$tmp/itools.log' && grep -qx 'module aesni_intel' '$tmp/itools.log'"
check "initramfs-tools: the configuration" test -f "$tmp/i2$etc/kmscrypt/volumes"
check "initramfs-tools: the hook copies no boot script (mkinitramfs would not run it)" \
        test ! -e "$tmp/i2/scripts"
check "initramfs-tools: no agent started (the CLI attaches alone)" \
        sh -c "! grep -q kmscryptd '$boot_top' '$tmp/itools.log'"
check "initramfs-tools: the boot script writes its own audit chain" \
        grep -q 'KMSCRYPT_AUDIT_HEAD=.*/kmscrypt/initrd-audit.head' "$boot_top"
check "initramfs-tools, keystore not allowed: no keystore, no root key, no audit chain" has_no_secrets "$tmp/i2"

use yes.conf volumes-root
itools "$tmp/i3" 022
check "initramfs-tools, keystore allowed, umask 022: refused" test "$rc" != 0
check "initramfs-tools, umask 022: says to set UMASK=0077" grep -q 'UMASK=0077' "$tmp/i3.out"
check "initramfs-tools, umask 022: no root key in the image" test ! -e "$tmp/i3$ks/root.key"
itools "$tmp/i4" 077
check "initramfs-tools, keystore allowed, umask 077: status 0" test "$rc" = 0
check "initramfs-tools, umask 077: key files and the root key (0600)" \
        test -f "$tmp/i4$ks/keys/0b7e.key" -a "$(stat -c %a "$tmp/i4$ks/root.key" 2> /dev/null)" = 600
check "initramfs-tools, umask 077: never the audit log or its chain head" no_audit_chain "$tmp/i4"
itools "$tmp/i5" 027
check "initramfs-tools, keystore allowed, umask 027 (others kept out too): status 0" test "$rc" = 0

use no.conf volumes-hdr
itools "$tmp/i6" 022
check "initramfs-tools: a detached header of an x-initrd.attach volume goes in" test -f "$tmp/i6$tmp/root.hdr"
check "initramfs-tools: the boot script's audit chain in /run, whatever runstatedir is" \
        grep -q 'KMSCRYPT_AUDIT_HEAD=/run/kmscrypt/initrd-audit.head' "$boot_top"

use bad.conf volumes-root
itools "$tmp/i7" 022
check "initramfs-tools, broken kmscrypt.conf and an x-initrd.attach volume: the build fails" test "$rc" != 0
use bad.conf volumes-none
itools "$tmp/i8" 022
check "initramfs-tools, broken kmscrypt.conf, no x-initrd.attach volume: a warning, status 0" \
        sh -c "[ $rc = 0 ] && grep -q 'nothing installed' '$tmp/i8.out'"

# The boot scripts: mkinitramfs runs them with "prereqs" on the host that
# builds the image, where they must only answer; in an image without the
# CLI (no x-initrd.attach volume) they do nothing.  $tmp/bin/kmscrypt-ran
# would say the CLI was run.
printf '#!/bin/sh\ntouch %s/bin/kmscrypt-ran\n' "$tmp" > "$tmp/bin/modprobe"
chmod +x "$tmp/bin/modprobe"
# prereqs_only SCRIPT: "prereqs" gives the script's PREREQ list and runs nothing after it (traced:
# the guard on /sbin/kmscrypt is never reached, wherever the CLI is installed).
prereqs_only() {
        out=$(sh -x "$1" prereqs 2> "$tmp/trace") &&
                [ "$out" = "$(sed -n 's/^PREREQ="\(.*\)"$/\1/p' "$1")" ] &&
                ! grep -q -e kmscrypt -e modprobe "$tmp/trace"
}
for s in "$boot_top" "$boot_block"; do
        stage=${s%/kmscrypt}
        check "initramfs-tools: ${stage##*/} script, prereqs: answers, runs nothing" prereqs_only "$s"
done
check "initramfs-tools: local-top script after the scripts that assemble the devices below it" \
        grep -qx 'PREREQ="mdadm mdrun multipath lvm2"' "$boot_top"
# (Not where /sbin/kmscrypt is installed: the script would attach this host's volumes.)
if [ ! -e /sbin/kmscrypt ]; then
        check "initramfs-tools: local-top script in an image without the CLI: status 0, nothing run" \
                sh -c "PATH=$tmp/bin:\$PATH '$boot_top' && [ ! -e '$tmp/bin/kmscrypt-ran' ]"
fi
check "initramfs-tools: local-block script runs local-top's" grep -qx 'exec /scripts/local-top/kmscrypt' "$boot_block"

# The conf-hook makes the image 0600 exactly when the keystore may go in.
check "conf-hook: initramfs-keystore = yes sets UMASK=0077" \
        test "$(UMASK= KMSCRYPT_CONFIG=$etc/kmscrypt/yes.conf sh -c ". '$tmp/conf-hook'; echo \$UMASK")" = 0077
check "conf-hook: without it, UMASK untouched" \
        test "$(UMASK=0022 KMSCRYPT_CONFIG=$etc/kmscrypt/no.conf sh -c ". '$tmp/conf-hook'; echo \$UMASK")" = 0022

[ "$fails" -eq 0 ]
