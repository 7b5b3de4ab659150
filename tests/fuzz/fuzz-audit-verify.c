/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Audit log text -> kc_audit_verify(), kc_audit_foreach() and the tail check
 * of kc_audit_open().
 *
 * Input: one flag byte, the chain head line (up to and including the first
 * newline), then the log.  Flag bit 0 asks for the chain to be fixed up
 * before the run, the way cryptsetup's LUKS2 fuzzer fixes header checksums:
 * each line's "prev" link is replaced by the SHA-256 of the line before, and
 * the head's hash by that of the last line, so that mutations of a record
 * reach the record checks instead of stopping at the first hash mismatch.
 * Bit 1 leaves the head file out.  Bit 2 passes evidence that the chain held
 * records, which turns an empty log without a head from fresh into lost.
 */

#include <fcntl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/audit.h"
#include "tests/fuzz/fuzz.h"

#define HASH_HEX 64

static char *dir, *log_path, *head_path;

static void remove_files(void) {
        unlink(log_path);
        unlink(head_path);
        rmdir(dir);
}

static void setup(void) {
        /* tmpfs first: kc_audit_open() fsyncs when it repairs a head, which costs ms on a disk. */
        char shm[] = "/dev/shm/kc-fuzz-audit.XXXXXX", tmp[] = "/tmp/kc-fuzz-audit.XXXXXX";
        const char *made;

        if (dir)
                return;
        made = mkdtemp(shm) ?: mkdtemp(tmp);
        dir = strdup(made ?: "");
        if (!dir || !dir[0] || asprintf(&log_path, "%s/audit.log", dir) < 0 ||
            asprintf(&head_path, "%s/audit.head", dir) < 0)
                abort();
        atexit(remove_files);
}

static void write_file(const char *path, const char *data, size_t n) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        FUZZ_ASSERT(fd >= 0);
        FUZZ_ASSERT(write(fd, data, n) == (ssize_t) n);
}

static void sha256_hex(const char *data, size_t n, char out[HASH_HEX]) {
        uint8_t md[32];
        unsigned len = 0;

        FUZZ_ASSERT(EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) == 1);
        for (int i = 0; i < 32; i++) {
                out[2 * i] = "0123456789abcdef"[md[i] >> 4];
                out[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
        }
}

/* Overwrite the 64 bytes after "name":" within [s, s+n), if they are there. */
static void put_hash(char *s, size_t n, const char *member, const char hash[HASH_HEX]) {
        size_t m = strlen(member);

        for (size_t i = 0; i + m + HASH_HEX <= n; i++)
                if (memcmp(s + i, member, m) == 0) {
                        memcpy(s + i + m, hash, HASH_HEX);
                        return;
                }
}

static void fix_up(char *head, size_t head_len, char *log, size_t log_len) {
        char prev[HASH_HEX];
        size_t pos = 0;

        memset(prev, '0', HASH_HEX);
        while (pos < log_len) {
                char *nl = memchr(log + pos, '\n', log_len - pos);
                size_t n = (nl ? (size_t) (nl - log) : log_len) - pos;

                put_hash(log + pos, n, "\"prev\":\"", prev);
                sha256_hex(log + pos, n, prev);
                pos += n + 1;
        }
        put_hash(head, head_len, "\"sha256\":\"", prev);
}

static int records_existed(const void *userdata, char *buf, size_t size) {
        snprintf(buf, size, "the fuzzer says so");
        return 1;
}

static int count_record(struct json_object *record, void *userdata) {
        (*(uint64_t *) userdata)++;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL;
        struct kc_audit_verify v = {};
        const struct kc_audit_evidence existed = { .check = records_existed };
        const struct kc_audit_evidence *evidence;
        struct kc_err err = {};
        uint64_t visited = 0;
        size_t head_len;
        char *nl;
        int r, verified;

        if (size < 1)
                return 0;
        setup();
        text = fuzz_strndup(data + 1, size - 1);
        nl = memchr(text, '\n', size - 1);
        head_len = nl ? (size_t) (nl - text) + 1 : size - 1;
        if (data[0] & 1)
                fix_up(text, head_len, text + head_len, size - 1 - head_len);
        write_file(log_path, text + head_len, size - 1 - head_len);
        unlink(head_path);
        if (!(data[0] & 2))
                write_file(head_path, text, head_len);
        evidence = data[0] & 4 ? &existed : NULL;

        verified = kc_audit_verify(log_path, head_path, evidence, &v);
        r = verified;
        FUZZ_ASSERT(r == 0 || r == -EBADMSG);
        if (r < 0)
                FUZZ_ASSERT(v.reason[0] != '\0');
        /* Every record that verified is one that a reader can list. */
        if (kc_audit_foreach(log_path, NULL, count_record, &visited) == 0)
                FUZZ_ASSERT(visited >= v.records);
        else
                FUZZ_ASSERT(r < 0);

        {
                _cleanup_audit_ struct kc_audit *a = NULL;
                r = kc_audit_open(log_path, head_path, evidence, &a, &err);
                fuzz_assert_refusal(r, &err);
                /* What verify calls intact, a head behind by a batch included, open takes. */
                if (verified == 0)
                        FUZZ_ASSERT(r == 0);
        }
        return 0;
}
