# Host side of the system tier: sourced by run.sh and tests/bench/boot-bench.sh.
# Needs: top_srcdir, top_builddir, and KC_VM_KVER/KC_VM_KROOT/KC_VM_VMLINUZ
# (from tests/vm/kernel.sh).  Everything lands in $sys (the build folder):
#   $sys/cache/   the debootstrap tarball, kept between runs
#   $sys/obj/     the project configured with a distribution's paths
#   $sys/work/    this run's root image, data disks, initramfs, logs
# shellcheck shell=sh

sys=$top_builddir/tests/system
cache=$sys/cache
work=$sys/work
SYS_MEM=${KC_SYSTEM_MEM:-1536}
SYS_BOOT_TIMEOUT=${KC_SYSTEM_BOOT_TIMEOUT:-420}

say() { echo "system: $*" >&2; }
die() { say "$*"; exit 1; }
skip() { say "SKIP: $*"; exit 77; }

sys_require() {
        [ "$(id -u)" = 0 ] || skip "needs root (debootstrap, mkfs.ext4 -d with device nodes)"
        for c in debootstrap qemu-system-x86_64 mkfs.ext4 debugfs busybox cpio depmod python3 cryptsetup; do
                command -v "$c" >/dev/null 2>&1 || skip "$c missing (contrib/dev/install-deps.sh)"
        done
}

sys_kernel() {
        [ -n "${KC_VM_KROOT:-}" ] && return 0
        [ -f "$top_srcdir/tests/vm/kernel.sh" ] || skip "tests/vm/kernel.sh (the vm tier) is not here"
        out=$(top_builddir=$top_builddir sh "$top_srcdir/tests/vm/kernel.sh") || exit $?
        eval "$out"
}

# Build and install the project as a Debian package would lay it out.
sys_install_project() {
        root=$1
        mkdir -p "$sys/obj"
        set -- --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run \
                --libexecdir=/usr/libexec --with-systemdsystemunitdir=/lib/systemd/system \
                --with-systemdgeneratordir=/lib/systemd/system-generators --with-udevdir=/lib/udev --with-tmpfilesdir=/usr/lib/tmpfiles.d \
                --without-aws
        (
                cd "$sys/obj"
                # Reconfigure when the arguments changed (config.status would keep the old ones).
                if [ ! -f Makefile ] || [ "$(cat .kc-configure-args 2>/dev/null)" != "$*" ]; then
                        "$top_srcdir/configure" -q "$@" >&2 && echo "$*" > .kc-configure-args
                fi
                make -s -j2 >&2
                make -s install DESTDIR="$root" >&2
        ) || die "building or installing the project for the guest failed"
}

# Busybox initramfs: load virtio, mount /dev/vda, hand over to systemd.
sys_initramfs() {
        out=$1 d=$work/initramfs
        rm -rf "$d"
        mkdir -p "$d/bin" "$d/mods" "$d/dev" "$d/proc" "$d/sys" "$d/newroot"
        cp "$(command -v busybox)" "$d/bin/busybox"
        for m in $(modprobe -d "$KC_VM_KROOT" -S "$KC_VM_KVER" --show-depends -a virtio_pci virtio_blk ext4 |
                   awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++'); do
                f=$KC_VM_KROOT$m
                case $m in "$KC_VM_KROOT"*) f=$m ;; esac
                n=$(basename "$f")
                case $n in
                *.xz) xz -dc "$f" > "$d/mods/${n%.xz}"; n=${n%.xz} ;;
                *) cp "$f" "$d/mods/$n" ;;
                esac
                echo "$n" >> "$d/mods/order"
        done
        cat > "$d/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
while read -r m; do insmod "/mods/$m" 2>/dev/null; done < /mods/order
# The root disk is the virtio disk with serial "sysroot", wherever it sits.
root= i=0
while [ -z "$root" ] && [ $i -lt 100 ]; do
        for s in /sys/block/vd*/serial; do
                [ "$(cat "$s" 2>/dev/null)" = sysroot ] && root=/dev/${s#/sys/block/} && root=${root%/serial}
        done
        [ -n "$root" ] || { sleep 0.1; i=$((i+1)); }
done
mount -t ext4 -o rw "$root" /newroot || { echo "initramfs: cannot mount the root disk ($root)"; poweroff -f; }
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
INIT
        chmod +x "$d/init"
        (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
}

# Make the root image from the cached base, the installed project, the
# kernel's modules and the guest test service.
sys_make_root() {
        base=$1 root=$work/root
        rm -rf "$root"
        mkdir -p "$root"
        tar -C "$root" -xf "$base"
        sys_install_project "$root"
        mkdir -p "$root/lib/modules"
        cp -a "$KC_VM_KROOT/lib/modules/$KC_VM_KVER" "$root/lib/modules/"
        depmod -b "$root" "$KC_VM_KVER"
        # As a kernel package leaves it: mkinitramfs reads the config.
        mkdir -p "$root/boot"
        cp "$KC_VM_KROOT/boot/config-$KC_VM_KVER" "$root/boot/"
        # What a first boot would otherwise redo under emulation (ldconfig,
        # hwdb, journal catalog: ConditionNeedsUpdate=), done here once.
        chroot "$root" /sbin/ldconfig
        touch "$root/etc/.updated" "$root/var/.updated"

        echo systest > "$root/etc/hostname"
        printf 'LABEL=sysroot / ext4 rw,errors=remount-ro 0 1\n' > "$root/etc/fstab"
        # A console without login prompts; results come from the test unit.
        ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
        ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
        ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
        mkdir -p "$root/usr/local/lib/kmscrypt-systest" "$root/etc/systemd/system/multi-user.target.wants"
        cp "$top_srcdir/tests/system/guest/"*.sh "$root/usr/local/lib/kmscrypt-systest/"
        chmod +x "$root/usr/local/lib/kmscrypt-systest/"*.sh
        cp "$top_srcdir/tests/system/guest/kmscrypt-systest.service" "$root/etc/systemd/system/"
        ln -sf ../kmscrypt-systest.service "$root/etc/systemd/system/multi-user.target.wants/"

        rm -f "$work/root.img"
        truncate -s 3G "$work/root.img"
        mkfs.ext4 -q -F -L sysroot -d "$root" "$work/root.img" || die "mkfs.ext4 -d failed"
        rm -rf "$root"
}

# sys_boot PHASE LOG [DISK...]: boot the guest with the phase on the kernel
# command line and the named disk images (in $work) attached at boot as
# virtio disks with serial=NAME.  While it runs, serve the guest's
# "SYSTEST-REQ plug|unplug NAME" lines through QMP.  Returns when QEMU exits.
# SYS_INITRD (default: the busybox one of sys_initramfs) and SYS_APPEND
# (more kernel arguments) change how it boots.
sys_boot() {
        phase=$1 log=$2
        shift 2
        initrd=${SYS_INITRD:-$work/initrd.gz}
        set -- -drive "file=$work/root.img,format=raw,if=none,id=sysroot,cache=unsafe" \
                -device virtio-blk-pci,drive=sysroot,serial=sysroot "$@"
        rm -f "$log" "$work/qmp.sock"
        qemu-system-x86_64 -m "$SYS_MEM" -smp 2 -cpu max -nic none \
                -kernel "$KC_VM_VMLINUZ" -initrd "$initrd" \
                -append "console=ttyS0 quiet panic=-1 systemd.show_status=0 systest.phase=$phase ${SYS_APPEND:-}" \
                -display none -monitor none -serial "file:$log" -no-reboot \
                -qmp "unix:$work/qmp.sock,server,nowait" "$@" &
        qpid=$!
        served=0 waited=0
        while kill -0 "$qpid" 2>/dev/null; do
                sleep 1
                waited=$((waited + 1))
                if [ $waited -ge "$SYS_BOOT_TIMEOUT" ]; then
                        say "phase $phase: no poweroff after ${waited}s, killing QEMU"
                        echo "SYSTEST $phase FAIL timeout: guest still running after ${waited}s" >> "$log"
                        kill "$qpid"
                        break
                fi
                reqs=$(grep -ao 'SYSTEST-REQ .*' "$log" 2>/dev/null | tr -d '\r' || true)
                n=$(printf '%s\n' "$reqs" | grep -c . || true)
                while [ "$served" -lt "$n" ]; do
                        served=$((served + 1))
                        sys_serve $(printf '%s\n' "$reqs" | sed -n "${served}p")
                done
        done
        wait "$qpid" 2>/dev/null || true
}

# One guest request: SYSTEST-REQ plug NAME | unplug NAME
sys_serve() {
        shift
        case $1 in
        plug)
                python3 "$top_srcdir/tests/system/qmp.py" "$work/qmp.sock" blockdev-add \
                        "{\"driver\":\"raw\",\"node-name\":\"$2\",\"file\":{\"driver\":\"file\",\"filename\":\"$work/$2.img\"}}" >&2 &&
                python3 "$top_srcdir/tests/system/qmp.py" "$work/qmp.sock" device_add \
                        "{\"driver\":\"virtio-blk-pci\",\"drive\":\"$2\",\"id\":\"dev-$2\",\"serial\":\"$2\"}" >&2 ||
                        say "plug $2 failed" ;;
        unplug)
                python3 "$top_srcdir/tests/system/qmp.py" "$work/qmp.sock" device_del "{\"id\":\"dev-$2\"}" >&2 ||
                        say "unplug $2 failed" ;;
        *) say "unknown guest request: $*" ;;
        esac
}

# sys_guest_file PATH OUT: copy a file out of the guest's root image (after
# the guest powered off), as the guest left it.
sys_guest_file() {
        rm -f "$2"
        debugfs -R "dump $1 $2" "$work/root.img" > /dev/null 2>&1 && [ -s "$2" ]
}

# Disk attached at boot: sys_disk NAME -> qemu arguments
sys_disk() {
        echo "-drive file=$work/$1.img,format=raw,if=none,id=$1,cache=unsafe -device virtio-blk-pci,drive=$1,serial=$1"
}
