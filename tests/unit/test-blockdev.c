/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * agent/blockdev.c: which devices a scan for UUID= and the like may read
 * (a sysfs tree of our own making), and the answers for what no device
 * carries.  Finding real devices by tag is tests/cli-volume/loop.sh's (loop
 * devices) and the vm tier's (beside a suspended dm-crypt mapping).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/blockdev.h"
#include "lib/macro.h"
#include "tests/unit/check-main.h"

/* A file dir/rel holding text (its folder made first). */
static void put(const char *dir, const char *rel, const char *text) {
        _cleanup_free_ char *path = NULL, *sub = NULL;
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/%s", dir, rel), 0);
        sub = strdup(path);
        *strrchr(sub, '/') = '\0';
        ck_assert_int_eq(mkdir(sub, 0755) == 0 || errno == EEXIST, 1);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        ck_assert_int_eq(fclose(f), 0);
}

/* A sysfs folder for one device: its size, and dm/uuid, dm/suspended when given (NULL: not dm). */
static char *device(const char *size, const char *dm_uuid, const char *suspended) {
        char *dir = kc_test_tmpdir();

        if (size)
                put(dir, "size", size);
        if (dm_uuid)
                put(dir, "dm/uuid", dm_uuid);
        if (suspended)
                put(dir, "dm/suspended", suspended);
        return dir;
}

START_TEST(test_disks_and_partitions_are_read) {
        _cleanup_free_ char *disk = device("2097152\n", NULL, NULL);

        ck_assert(kc_blockdev_probe_safe(disk));
}
END_TEST

START_TEST(test_empty_devices_are_not) {
        _cleanup_free_ char *empty = device("0\n", NULL, NULL), *nosize = device(NULL, NULL, NULL);

        /* An unbound loop device, a drive with no medium; a folder that is no device. */
        ck_assert(!kc_blockdev_probe_safe(empty));
        ck_assert(!kc_blockdev_probe_safe(nosize));
}
END_TEST

START_TEST(test_dm_crypt_mappings_never) {
        _cleanup_free_ char *running = device("65536\n", "CRYPT-LUKS2-0b1f6e2a5d1c4b9e9f001234567890ab-pgdata\n", "0\n"),
                            *plain = device("65536\n", "CRYPT-PLAIN-swap\n", "0\n");

        /* Running now, but the revocation policy or luksSuspend may suspend it under the probe. */
        ck_assert(!kc_blockdev_probe_safe(running));
        ck_assert(!kc_blockdev_probe_safe(plain));
}
END_TEST

START_TEST(test_other_dm_devices_unless_suspended) {
        _cleanup_free_ char *lv = device("65536\n", "LVM-pV8TgNKMJVNrolJgMhVwg4CAeFFAIMC8\n", "0\n"),
                            *lv_suspended = device("65536\n", "LVM-pV8TgNKMJVNrolJgMhVwg4CAeFFAIMC8\n", "1\n"),
                            *no_uuid_suspended = device("65536\n", "\n", "1\n");

        ck_assert(kc_blockdev_probe_safe(lv));
        ck_assert(!kc_blockdev_probe_safe(lv_suspended));
        ck_assert(!kc_blockdev_probe_safe(no_uuid_suspended));
}
END_TEST

START_TEST(test_tags_no_device_carries) {
        const char *specs[] = { "UUID=00000000-0000-4000-8000-0000000000ff", "LABEL=kmscrypt-test-no-such-label",
                                "PARTUUID=00000000-0000-4000-8000-0000000000fe",
                                "PARTLABEL=kmscrypt-test-no-such-part" };

        for (size_t i = 0; i < ARRAY_SIZE(specs); i++) {
                _cleanup_free_ char *path = NULL, *want = NULL;
                struct kc_err err = {};

                ck_assert_int_eq(kc_resolve_device(specs[i], &path, &err), -ENODEV);
                ck_assert_ptr_null(path);
                ck_assert_int_ge(asprintf(&want, "no device with %s", specs[i]), 0);
                ck_assert_str_eq(err.msg, want);
        }
}
END_TEST

START_TEST(test_bad_specs) {
        _cleanup_free_ char *path = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_resolve_device("UUID=", &path, &err), -EINVAL);
        ck_assert_str_eq(err.msg, "UUID= names no value");
        ck_assert_int_eq(kc_resolve_device("", &path, &err), -EINVAL);
        ck_assert_ptr_null(path);
        /* Anything else is a path, taken as it is (its open says what is wrong with it). */
        ck_assert_int_eq(kc_resolve_device("/dev/disk/by-id/virtio-pgdata", &path, &err), 0);
        ck_assert_str_eq(path, "/dev/disk/by-id/virtio-pgdata");
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("blockdev");
        TCase *tc = tcase_create("core");
        tcase_add_test(tc, test_disks_and_partitions_are_read);
        tcase_add_test(tc, test_empty_devices_are_not);
        tcase_add_test(tc, test_dm_crypt_mappings_never);
        tcase_add_test(tc, test_other_dm_devices_unless_suspended);
        tcase_add_test(tc, test_tags_no_device_carries);
        tcase_add_test(tc, test_bad_specs);
        suite_add_tcase(s, tc);
        return s;
}
