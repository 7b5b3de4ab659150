/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The /etc/kmscrypt/volumes parser (agent/daemon/volumes.c). */
#include <fcntl.h>
#include <string.h>

#include "agent/daemon/volumes.h"
#include "dmsetup-helpers/dmcrypt.h"
#include "lib/initrd.h"
#include "lib/strv.h"
#include "tests/unit/check-main.h"

static int parse(const char *text, struct kc_volumes **ret, struct kc_err *err) {
        return kc_volumes_parse(text, strlen(text), "volumes", ret, err);
}

/* text must be refused with error and a message that starts with where and mentions what. */
static void refused(const char *text, int error, const char *where, const char *what) {
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        int r = parse(text, &v, &err);

        ck_assert_msg(r == error, "%s: got %d (%s), want %d", text, r, err.msg, error);
        ck_assert_ptr_null(v);
        ck_assert_msg(strncmp(err.msg, where, strlen(where)) == 0, "%s: \"%s\" does not start with \"%s\"",
                      text, err.msg, where);
        ck_assert_msg(strstr(err.msg, what), "%s: \"%s\" does not mention \"%s\"", text, err.msg, what);
}

START_TEST(test_full_file) {
        _cleanup_volumes_ struct kc_volumes *v = NULL;
        const struct kc_volume_conf *a, *b, *c;
        struct kc_err err = {};
        const char *text =
                "# name device context options\n"
                "\n"
                "pgdata  UUID=0b7e-11  db-id=db-1,volume-id=pgdata\n"
                "   # indented comment\n"
                "pgwal\tPARTLABEL=wal\tdb-id=db-1,volume-id=pgwal,note=a\\ b\tnofail,timeout=30,"
                "perf=none,discard,read-only,hotplug=no,header=/etc/kmscrypt/wal.hdr,kms=aws+local,"
                "revoke=suspend,_netdev\r\n"
                "spare /dev/vdc aws:rds:db-id=db-2 same-cpu-crypt,timeout=0";

        ck_assert_msg(parse(text, &v, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(v->n, 3);

        a = kc_volumes_find(v, "pgdata");
        ck_assert_ptr_nonnull(a);
        ck_assert_str_eq(a->device, "UUID=0b7e-11");
        ck_assert_str_eq(kc_context_get(a->context, "volume-id"), "pgdata");
        ck_assert_uint_eq(a->flags, KC_CRYPT_DEFAULT_FLAGS);
        ck_assert_uint_eq(a->timeout, KC_VOLUME_DEFAULT_TIMEOUT);
        ck_assert(a->hotplug && !a->nofail && !a->read_only && !a->netdev);
        ck_assert_int_eq(a->revoke, KC_REVOKE_KEEP);
        ck_assert_ptr_null(a->header);
        ck_assert_ptr_null(a->kms);
        ck_assert_uint_eq(a->line, 3);

        b = kc_volumes_find(v, "pgwal");
        ck_assert_ptr_nonnull(b);
        ck_assert_str_eq(kc_context_get(b->context, "note"), "a b");
        ck_assert(b->nofail && b->read_only && !b->hotplug && b->netdev);
        ck_assert_uint_eq(b->timeout, 30);
        ck_assert_uint_eq(b->flags, KC_CRYPT_ALLOW_DISCARDS);  /* perf=none cleared the defaults */
        ck_assert_str_eq(b->header, "/etc/kmscrypt/wal.hdr");
        ck_assert_uint_eq(kc_strv_length(b->kms), 2);
        ck_assert_str_eq(b->kms[0], "aws");
        ck_assert_int_eq(b->revoke, KC_REVOKE_SUSPEND);

        c = kc_volumes_find(v, "spare");
        ck_assert_ptr_nonnull(c);
        ck_assert_str_eq(kc_context_get(c->context, "aws:rds:db-id"), "db-2");
        ck_assert_uint_eq(c->flags, KC_CRYPT_DEFAULT_FLAGS | KC_CRYPT_SAME_CPU_CRYPT);
        ck_assert_uint_eq(c->timeout, 0);
        ck_assert_uint_eq(c->line, 6);
        ck_assert_ptr_null(kc_volumes_find(v, "nope"));
}
END_TEST

START_TEST(test_empty_file) {
        _cleanup_volumes_ struct kc_volumes *v = NULL;

        ck_assert_int_eq(parse("# nothing here\n\n   \n", &v, NULL), 0);
        ck_assert_uint_eq(v->n, 0);
}
END_TEST

START_TEST(test_fields_refused) {
        refused("a /dev/x\n", -EINVAL, "volumes:1: ", "expected: name device context");
        refused("\n\na /dev/x db-id=1 nofail extra\n", -E2BIG, "volumes:3: ", "more than 4 fields");
        refused("a /dev/x db-id=1\\", -EINVAL, "volumes:1: ", "backslash at end");
        refused("-a /dev/x db-id=1", -EINVAL, "volumes:1: ", "invalid volume name");
        refused("a/b /dev/x db-id=1", -EINVAL, "volumes:1: ", "invalid volume name");
        refused("a dev/x db-id=1", -EINVAL, "volumes:1: ", "neither an absolute path");
        refused("a UUID= db-id=1", -EINVAL, "volumes:1: ", "empty value");
        refused("a ID=3 db-id=1", -EINVAL, "volumes:1: ", "neither");
        refused("a /dev/x\\ y db-id=1", -EINVAL, "volumes:1: ", "backslash");
}
END_TEST

START_TEST(test_context_refused) {
        refused("a /dev/x db-id", -EINVAL, "volumes:1: ", "");
        refused("a /dev/x db-id=1,db-id=2", -EINVAL, "volumes:1: ", "duplicate key");
        refused("a /dev/x =v", -EINVAL, "volumes:1: ", "");
}
END_TEST

START_TEST(test_options_refused) {
        refused("a /dev/x db-id=1 fast", -EINVAL, "volumes:1: ", "unknown option \"fast\"");
        refused("a /dev/x db-id=1 nofail,,discard", -EINVAL, "volumes:1: ", "empty option");
        refused("a /dev/x db-id=1 nofail,", -EINVAL, "volumes:1: ", "empty option");
        refused("a /dev/x db-id=1 nofail=yes", -EINVAL, "volumes:1: ", "takes no value");
        refused("a /dev/x db-id=1 timeout", -EINVAL, "volumes:1: ", "needs a value");
        refused("a /dev/x db-id=1 timeout=", -EINVAL, "volumes:1: ", "empty value");
        refused("a /dev/x db-id=1 timeout=-1", -EINVAL, "volumes:1: ", "timeout=-1");
        refused("a /dev/x db-id=1 timeout=5s", -EINVAL, "volumes:1: ", "timeout=5s");
        refused("a /dev/x db-id=1 timeout=99999999", -EINVAL, "volumes:1: ", "up to a week");
        refused("a /dev/x db-id=1 hotplug=maybe", -EINVAL, "volumes:1: ", "yes or no");
        refused("a /dev/x db-id=1 header=rel/path", -EINVAL, "volumes:1: ", "absolute path");
        refused("a /dev/x db-id=1 perf=turbo", -EINVAL, "volumes:1: ", "unknown dm-crypt flag");
        refused("a /dev/x db-id=1 kms=AWS", -EINVAL, "volumes:1: ", "not a provider name");
        refused("a /dev/x db-id=1 kms=+", -EINVAL, "volumes:1: ", "no provider");
        refused("a /dev/x db-id=1 kms=asw", -EINVAL, "volumes:1: ", "no KMS provider \"asw\" in this build");
        refused("a /dev/x db-id=1 revoke=destroy", -EINVAL, "volumes:1: ", "keep or suspend");
        /* Escapes belong to the context: kept here, they would end up in the header's path. */
        refused("a /dev/x db-id=1 header=/etc/a\\ b.hdr", -EINVAL, "volumes:1: ", "backslash");
        refused("a /dev/x db-id=1 nofail,header=/etc/a\\,b", -EINVAL, "volumes:1: ", "backslash");
}
END_TEST

START_TEST(test_initrd_attach) {
        _cleanup_volumes_ struct kc_volumes *v = NULL;
        struct kc_err err = {};
        const char *text =
                "root  UUID=77aa  db-id=db-1,volume-id=root  x-initrd.attach\n"
                "data  /dev/vdb   db-id=db-1,volume-id=data\n"
                "usr   /dev/vdc   db-id=db-1,volume-id=usr   nofail,x-initrd.attach,timeout=5\n";

        ck_assert_msg(parse(text, &v, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(v->n, 3);
        ck_assert(kc_volumes_find(v, "root")->initrd);
        ck_assert(!kc_volumes_find(v, "data")->initrd);
        ck_assert(kc_volumes_find(v, "usr")->initrd && kc_volumes_find(v, "usr")->nofail);
        ck_assert_uint_eq(kc_volumes_find(v, "usr")->timeout, 5);

        /* In the initramfs only these are kept, in file order. */
        kc_volumes_keep_initrd(v);
        ck_assert_uint_eq(v->n, 2);
        ck_assert_str_eq(v->volumes[0].name, "root");
        ck_assert_str_eq(v->volumes[1].name, "usr");
        ck_assert_ptr_null(kc_volumes_find(v, "data"));

        /* As crypttab's: a flag, spelled exactly. */
        refused("a /dev/x db-id=1 x-initrd.attach=yes", -EINVAL, "volumes:1: ", "takes no value");
        refused("a /dev/x db-id=1 x-initrd.attach=", -EINVAL, "volumes:1: ", "takes no value");
        refused("a /dev/x db-id=1 x-initrd", -EINVAL, "volumes:1: ", "unknown option \"x-initrd\"");
        refused("a /dev/x db-id=1 x-initrd.mount", -EINVAL, "volumes:1: ", "unknown option \"x-initrd.mount\"");
        refused("a /dev/x db-id=1 X-Initrd.Attach", -EINVAL, "volumes:1: ", "unknown option");
        refused("a /dev/x db-id=1 initrd", -EINVAL, "volumes:1: ", "unknown option \"initrd\"");
}
END_TEST

START_TEST(test_load_in_initrd) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *path = NULL;
        struct kc_volumes *v = NULL;
        struct kc_err err = {};
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/volumes", dir), 0);
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("data /dev/vdb db-id=1\nroot /dev/vda2 db-id=2 x-initrd.attach\n", f);
        fclose(f);

        setenv("KMSCRYPT_INITRD", "1", 1);
        ck_assert(kc_in_initrd());
        ck_assert_msg(kc_volumes_load(path, &v, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(v->n, 1);
        ck_assert_str_eq(v->volumes[0].name, "root");
        ck_assert_uint_eq(v->volumes[0].line, 2);
        kc_volumes_free(v);

        setenv("KMSCRYPT_INITRD", "0", 1);
        ck_assert(!kc_in_initrd());
        ck_assert_msg(kc_volumes_load(path, &v, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(v->n, 2);
        kc_volumes_free(v);
        unsetenv("KMSCRYPT_INITRD");
        unlink(path);
        rmdir(dir);
}
END_TEST

START_TEST(test_duplicates_refused) {
        refused("a /dev/x db-id=1\nb /dev/y db-id=1\na /dev/z db-id=1\n", -EEXIST, "volumes:3: ",
                "already defined on line 1");
        refused("a /dev/x db-id=1\n#\nb /dev/x db-id=2\n", -EEXIST, "volumes:3: ", "already volume a (line 1)");
}
END_TEST

START_TEST(test_nul_refused) {
        static const char text[] = "# ok\na /dev/x db-id=1\0b /dev/y db-id=1\n";
        struct kc_volumes *v = NULL;
        struct kc_err err = {};

        ck_assert_int_eq(kc_volumes_parse(text, sizeof(text) - 1, "volumes", &v, &err), -EINVAL);
        ck_assert_msg(strstr(err.msg, "volumes:2: ") && strstr(err.msg, "NUL"),
                      "message \"%s\" does not name line 2", err.msg);
}
END_TEST

START_TEST(test_load_file) {
        _cleanup_free_ char *dir = kc_test_tmpdir(), *path = NULL, *bad = NULL, *missing = NULL;
        _cleanup_volumes_ struct kc_volumes *v = NULL;
        struct kc_volumes *v2 = NULL;
        struct kc_err err = {};
        FILE *f;

        ck_assert_int_ge(asprintf(&path, "%s/volumes", dir), 0);
        ck_assert_int_ge(asprintf(&bad, "%s/bad", dir), 0);
        ck_assert_int_ge(asprintf(&missing, "%s/missing", dir), 0);
        f = fopen(path, "we");
        fputs("a /dev/x db-id=1\n", f);
        fclose(f);
        f = fopen(bad, "we");
        fputs("# ok\na /dev/x db-id=1 what\n", f);
        fclose(f);

        ck_assert_int_eq(kc_volumes_load(path, &v, &err), 0);
        ck_assert_uint_eq(v->n, 1);
        ck_assert_int_eq(kc_volumes_load(bad, &v2, &err), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err.msg, "/bad:2: unknown option \"what\""));
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volumes_load(missing, &v2, &err), -ENOENT);
        err = (struct kc_err) {};
        ck_assert_int_eq(kc_volumes_load(dir, &v2, &err), -EINVAL);
        ck_assert_ptr_null(v2);
}
END_TEST

Suite *kc_test_suite(void) {
        Suite *s = suite_create("volumes");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_full_file);
        tcase_add_test(tc, test_empty_file);
        tcase_add_test(tc, test_fields_refused);
        tcase_add_test(tc, test_context_refused);
        tcase_add_test(tc, test_options_refused);
        tcase_add_test(tc, test_initrd_attach);
        tcase_add_test(tc, test_load_in_initrd);
        tcase_add_test(tc, test_duplicates_refused);
        tcase_add_test(tc, test_nul_refused);
        tcase_add_test(tc, test_load_file);
        suite_add_tcase(s, tc);
        return s;
}
