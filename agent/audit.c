/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hash-chained audit log.  The format and the chain rule are specified in
 * docs/audit.md; in short: one JSON object per line, "seq" counts from 1,
 * "prev" is the hex SHA-256 of the previous line's bytes (without its
 * newline), and a separate head file holds the seq and hash of the newest
 * line so that removing the newest records is detected too.
 *
 * Every writer, in any process, takes flock(LOCK_EX) on the log and checks
 * the tail under the lock, so the chain has one writer at a time.  Within
 * a process the handles on one log share it (struct chain), and records
 * that wait for it go out as one batch: one write and one flush of the log
 * and of the head.  What is kept between writes is only the bytes last
 * seen, compared again before they are trusted.  Readers (verify, foreach)
 * take LOCK_SH only long enough to note the size of the log and read the
 * head, then walk that many bytes without holding writers off.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "agent/audit.h"
#include "lib/fault.h"
#include "lib/json-util.h"
#include "lib/log.h"
#include "lib/time-util.h"

/* Longest line accepted, newline excluded: a maximal context fits with room to spare. */
#define AUDIT_LINE_MAX (64 * 1024)
#define HASH_HEX_LEN 64
#define HEAD_MAX 256
/*
 * Most records one batch writes (kc_audit_write): so the most by which a
 * crash between a batch's log write and its head update leaves the head
 * behind the log, which opening repairs and verify accepts.
 */
#define AUDIT_BATCH_MAX 64
#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Records are written as valid UTF-8, so a record that is not was changed. */
static const struct kc_json_parse utf8 = { .flags = JSON_TOKENER_VALIDATE_UTF8 };

/* A position in the chain: the seq of a line and the hex SHA-256 of its bytes. */
struct link {
        uint64_t seq;
        char hash[HASH_HEX_LEN + 1];
};

/* A record waiting in a chain's queue, on its writer's stack; the batch's leader fills the rest. */
struct pending {
        const struct kc_audit_record *rec;
        struct pending *next;
        char *line;             /* the line written (for syslog), NULL if it was not */
        int result;
        bool done;
};

/*
 * The bytes this process last wrote as the chain's end: while the log has
 * that size, ends with that line, and the head holds that text, the tail
 * is known without parsing or hashing anything (every byte was compared,
 * so nothing changed that a parse would have seen).
 */
struct tail_cache {
        bool valid;
        uint64_t size;
        struct link last;
        char *line;             /* the last line, newline excluded */
        size_t len;
        char head[HEAD_MAX];    /* the head file's text */
        size_t head_len;
};

/*
 * One open log.  A process has one per log and head, shared by every
 * handle on them (kmscryptd's attach threads each open their own KMS
 * handle): so records written at the same time go out as one batch, one
 * write and one flush of the log and of the head for all of them.
 */
struct chain {
        struct chain *next;     /* in the list of shared chains */
        unsigned refs;
        char *path;
        char *head_path;
        struct kc_audit_evidence evidence; /* the owner's (below), check NULL: none */
        bool restarting;        /* kc_audit_restart(): a lost chain is to be started anew */
        bool created;           /* the log was missing and this chain created it */
        int fd;                 /* O_RDWR|O_APPEND; the flock is taken on it */
        pid_t pid;              /* process that opened fd: a forked child needs its own open file */
        bool reopen;            /* fd is a parent's: the next owner opens the log again */
        pthread_mutex_t lock;   /* guards what follows; flock does not exclude threads sharing fd */
        pthread_cond_t idle;    /* busy cleared, or a record done */
        bool busy;              /* a thread owns fd, the flock and the cache */
        struct pending *queue, **queue_end;
        struct tail_cache cache;
};

/* A handle: the shared chain, and what says whether it held records (each handle's own). */
struct kc_audit {
        struct chain *chain;
        struct kc_audit_evidence evidence;
};

static pthread_mutex_t chains_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chain *chains;

/* ---- small helpers ---- */

static int sha256_hex(const void *data, size_t n, char ret[HASH_HEX_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;

        if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len * 2 != HASH_HEX_LEN)
                return -EIO;
        for (unsigned int i = 0; i < len; i++) {
                ret[2 * i] = hex[md[i] >> 4];
                ret[2 * i + 1] = hex[md[i] & 15];
        }
        ret[HASH_HEX_LEN] = '\0';
        return 0;
}

static bool is_hash_hex(const char *s) {
        return strlen(s) == HASH_HEX_LEN && strspn(s, "0123456789abcdef") == HASH_HEX_LEN;
}

static int flock_retry(int fd, int op) {
        while (flock(fd, op) < 0)
                if (errno != EINTR)
                        return negative_errno();
        return 0;
}

static int write_full(int fd, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, buf, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EIO;
                buf += k;
                n -= k;
        }
        return 0;
}

static int fsync_parent_dir(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int fd = -1;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return negative_errno();
        return 0;
}

static const char *json_get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static int json_get_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;
        int64_t i;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        errno = 0;
        i = json_object_get_int64(v);
        if (i < 0 || errno != 0)
                return -EBADMSG;
        *ret = (uint64_t) i;
        return 0;
}

/* ---- time ---- */

static int format_time(char ret[32]) {
        struct timespec ts;
        struct tm tm;
        size_t n;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return negative_errno();
        if (!gmtime_r(&ts.tv_sec, &tm))
                return -EOVERFLOW;
        n = strftime(ret, 32, "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0)
                return -EOVERFLOW;
        snprintf(ret + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
        return 0;
}

/*
 * "2026-11-27T23:59:59.123Z" and nothing else: the one spelling format_time()
 * writes.  A year of four digits from 1970 (lib/time-util.h): format_time()
 * writes the clock's time, never one before the epoch.
 */
static int parse_time(const char *s, time_t *ret) {
        const char *end;
        time_t t;
        int ms;

        if (kc_time_parse_datetime(s, &t, &end) < 0 || end[0] != '.' || kc_time_digits(end + 1, 3, &ms) < 0 ||
            !streq(end + 4, "Z"))
                return -EINVAL;
        *ret = t;
        return 0;
}

int kc_audit_parse_list_time(const char *text, time_t *ret) {
        unsigned long long secs;
        const char *rest;
        char *end;
        time_t t;

        if (text[0] == '@') {
                errno = 0;
                secs = strtoull(text + 1, &end, 10);
                /* @0 is the epoch itself, as date(1) takes it: every record, the same as no --since. */
                if (text[1] < '0' || text[1] > '9' || errno != 0 || *end != '\0' ||
                    secs > (unsigned long long) INT32_MAX * 4)
                        return -EINVAL;
                *ret = (time_t) secs;
                return 0;
        }
        /*
         * A date and time with its Z, or a date alone (its midnight, UTC); none before 1970-01-01.  Without
         * the Z a time reads as local to whoever types it, and would list from hours off what was meant.
         */
        if (kc_time_parse_datetime(text, &t, &rest) >= 0) {
                if (*rest != 'Z')
                        return -EINVAL;
                rest++;
        } else if (kc_time_parse_date(text, &t, &rest) < 0)
                return -EINVAL;
        if (*rest != '\0')
                return -EINVAL;
        *ret = t;
        return 0;
}

/* ---- records ---- */

/* What the chain needs from a record; fills only with the whole line valid. */
struct record_view {
        uint64_t seq;
        char prev[HASH_HEX_LEN + 1];
        time_t time;
};

static int parse_record(const char *line, size_t n, struct json_object **ret_obj,
                        struct record_view *ret, struct kc_err *err) {
        _cleanup_json_ struct json_object *o = NULL;
        struct record_view v = {};
        const char *s;
        int r;

        r = kc_json_parse_object(line, n, &utf8, &o, err);
        if (r < 0)
                return r;
        if (json_get_u64(o, "seq", &v.seq) < 0 || v.seq == 0)
                return kc_err_set(err, -EBADMSG, "\"seq\" is not a positive integer");
        s = json_get_string(o, "prev");
        if (!s || !is_hash_hex(s))
                return kc_err_set(err, -EBADMSG, "\"prev\" is not 64 lowercase hex digits");
        memcpy(v.prev, s, sizeof(v.prev));
        s = json_get_string(o, "time");
        if (!s || parse_time(s, &v.time) < 0)
                return kc_err_set(err, -EBADMSG, "\"time\" is not a UTC time like 2026-11-27T23:59:59.123Z");
        s = json_get_string(o, "operation");
        if (!s || !s[0])
                return kc_err_set(err, -EBADMSG, "\"operation\" is missing");
        s = json_get_string(o, "result");
        if (!s || (!streq(s, "ok") && !streq(s, "error") && !streq(s, "pending")))
                return kc_err_set(err, -EBADMSG, "\"result\" is not \"ok\", \"error\" or \"pending\"");

        if (ret_obj)
                *ret_obj = TAKE_PTR(o);
        *ret = v;
        return 0;
}

/* Length of the well-formed UTF-8 sequence at s (no overlongs, no surrogates), 0 if there is none. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
        static const struct { unsigned char mask, lead; size_t len; uint32_t min; } forms[] = {
                { 0xe0, 0xc0, 2, 0x80 },
                { 0xf0, 0xe0, 3, 0x800 },
                { 0xf8, 0xf0, 4, 0x10000 },
        };

        if (s[0] < 0x80)
                return 1;
        for (size_t f = 0; f < ARRAY_SIZE(forms); f++) {
                uint32_t cp;

                if ((s[0] & forms[f].mask) != forms[f].lead)
                        continue;
                if (forms[f].len > n)
                        return 0;
                cp = s[0] & (0x7f >> forms[f].len);
                for (size_t i = 1; i < forms[f].len; i++) {
                        if ((s[i] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i] & 0x3f);
                }
                if (cp < forms[f].min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                return forms[f].len;
        }
        return 0;
}

/*
 * A JSON string for text that did not pass a UTF-8 check (an executable
 * path, a volume name, free text): invalid bytes become U+FFFD so that every
 * line stays valid JSON for strict readers.  NULL text is JSON null.
 */
static int json_text(const char *s, struct json_object **ret) {
        const unsigned char *p = (const unsigned char *) s;
        size_t n, i = 0, k = 0;
        _cleanup_free_ char *fixed = NULL;

        if (!s) {
                *ret = NULL;
                return 0;
        }
        n = strlen(s);
        fixed = malloc(n * 3 + 1);
        if (!fixed)
                return -ENOMEM;
        while (i < n) {
                size_t len = utf8_seq_len(p + i, n - i);
                if (len == 0) {
                        memcpy(fixed + k, "\xef\xbf\xbd", 3);
                        k += 3;
                        i++;
                        continue;
                }
                memcpy(fixed + k, p + i, len);
                k += len;
                i += len;
        }
        *ret = json_object_new_string_len(fixed, (int) k);
        return *ret ? 0 : -ENOMEM;
}

/* Add v under key, taking it; v NULL adds null. */
static int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_add_text(struct json_object *o, const char *key, const char *s) {
        struct json_object *v;
        int r = json_text(s, &v);
        return r < 0 ? r : json_add(o, key, v);
}

static int json_add_int(struct json_object *o, const char *key, int64_t i) {
        struct json_object *v = json_object_new_int64(i);
        return v ? json_add(o, key, v) : -ENOMEM;
}

static int json_caller(const struct kc_caller *c, struct json_object **ret) {
        _cleanup_json_ struct json_object *o = NULL;
        int r;

        if (!c) {
                *ret = NULL;
                return 0;
        }
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_int(o, "uid", c->uid)) < 0 ||
            (r = json_add_int(o, "pid", c->pid)) < 0 ||
            (r = json_add_text(o, "exe", c->exe[0] ? c->exe : NULL)) < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

/* An intent is neither a success nor a failure yet: its outcome is a later record. */
static const char *record_result(const struct kc_audit_record *rec) {
        if (rec->intent)
                return "pending";
        return rec->result < 0 ? "error" : "ok";
}

/* The record as one line of compact JSON, members in the order of docs/audit.md. No newline. */
static int build_line(const struct kc_audit_record *rec, uint64_t seq, const char *prev, char **ret, size_t *ret_len) {
        _cleanup_json_ struct json_object *o = NULL;
        struct json_object *ctx = NULL, *caller = NULL;
        char now[32];
        const char *text;
        size_t len;
        int r;

        r = format_time(now);
        if (r < 0)
                return r;
        if (rec->context) {
                r = kc_context_to_json(rec->context, &ctx);
                if (r < 0)
                        return r;
        }
        r = json_caller(rec->caller, &caller);
        if (r < 0) {
                json_object_put(ctx);
                return r;
        }
        o = json_object_new_object();
        if (!o) {
                json_object_put(ctx);
                json_object_put(caller);
                return -ENOMEM;
        }
        if ((r = json_add_int(o, "seq", (int64_t) seq)) < 0 ||
            (r = json_add_text(o, "time", now)) < 0 ||
            (r = json_add_text(o, "operation", rec->operation)) < 0 ||
            (r = json_add_text(o, "key_id", rec->key_id)) < 0 ||
            (r = json_add(o, "key_version", rec->key_version ? json_object_new_int64(rec->key_version) : NULL)) < 0 ||
            (r = json_add(o, "encryption_context", TAKE_PTR(ctx))) < 0 ||
            (r = json_add(o, "caller", TAKE_PTR(caller))) < 0 ||
            (r = json_add_text(o, "volume", rec->volume)) < 0 ||
            (r = json_add_text(o, "result", record_result(rec))) < 0 ||
            (r = json_add_text(o, "error", rec->intent || rec->result >= 0 ? NULL :
                                           rec->error ?: strerror(-rec->result))) < 0 ||
            (r = json_add_text(o, "detail", rec->detail)) < 0 ||
            (r = json_add_text(o, "prev", prev)) < 0) {
                json_object_put(ctx);
                json_object_put(caller);
                return r;
        }
        /* A key_version that failed to allocate would have been written as null: check it is there. */
        if (rec->key_version && !json_object_object_get(o, "key_version"))
                return -ENOMEM;

        text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        if (!text)
                return -ENOMEM;
        if (len > AUDIT_LINE_MAX)
                return -E2BIG;
        *ret = strndup(text, len);
        if (!*ret)
                return -ENOMEM;
        *ret_len = len;
        return 0;
}

/* ---- the head file ---- */

/* The head file's bytes into buf: how many; -ENOENT when there is none (err untouched). */
static int head_read_text(const char *path, char buf[static HEAD_MAX], struct kc_err *err) {
        _cleanup_close_ int fd = -1;
        ssize_t n;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                if (r == -ENOENT)
                        return r;
                return kc_err_set(err, r, "cannot open audit chain head %s: %s", path, strerror(-r));
        }
        do
                n = read(fd, buf, HEAD_MAX);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = negative_errno();
                return kc_err_set(err, r, "cannot read audit chain head %s: %s", path, strerror(-r));
        }
        return (int) n;
}

/* The head's n bytes in buf: -EBADMSG when they are not a head. */
static int head_parse(const char *path, const char *buf, size_t n, struct link *ret, struct kc_err *err) {
        _cleanup_json_ struct json_object *o = NULL;
        struct link h = {};
        const char *s;

        if (n == 0 || n >= HEAD_MAX || buf[n - 1] != '\n')
                return kc_err_set(err, -EBADMSG, "audit chain head %s is not one line of at most %d bytes",
                                  path, HEAD_MAX - 1);
        if (kc_json_parse_object(buf, n - 1, &utf8, &o, NULL) < 0 || json_object_object_length(o) != 2 ||
            json_get_u64(o, "seq", &h.seq) < 0 || !(s = json_get_string(o, "sha256")) || !is_hash_hex(s) ||
            (h.seq == 0 && !streq(s, ZERO_HASH)))
                return kc_err_set(err, -EBADMSG, "audit chain head %s is malformed", path);
        memcpy(h.hash, s, sizeof(h.hash));
        *ret = h;
        return 0;
}

/* -ENOENT when there is none (err untouched), -EBADMSG when it is not a head. */
static int head_read(const char *path, struct link *ret, struct kc_err *err) {
        char buf[HEAD_MAX];
        int n = head_read_text(path, buf, err);

        if (n < 0)
                return n;
        return head_parse(path, buf, n, ret, err);
}

/* The head's text for h, newline included: its length. */
static size_t head_format(const struct link *h, char text[static HEAD_MAX]) {
        return (size_t) snprintf(text, HEAD_MAX, "{\"seq\":%" PRIu64 ",\"sha256\":\"%s\"}\n", h->seq, h->hash);
}

/*
 * Rewrite an existing head in place: its one line (well under 512 bytes)
 * at offset 0, then fdatasync: one flush instead of the three of a
 * replace (temporary file, rename, directory), and every batch of audit
 * records pays it.  The line lies in the file's first 512-byte sector,
 * which storage writes whole (PostgreSQL keeps pg_control under 512 bytes
 * for the same reason); should a crash leave it torn or stale anyway,
 * head_read() and load_tail() refuse it, never trust it.  A head that is
 * not there yet (or is not a regular file) is -ENOENT: the caller
 * replaces it instead.  ret_touched: the head may have changed.
 */
static int head_rewrite(const char *path, const char *text, size_t n, bool *ret_touched) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        struct stat st;
        int r;

        *ret_touched = false;
        if (fd < 0)
                return errno == ELOOP ? -ENOENT : negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode))
                return -ENOENT;
        *ret_touched = true;
        r = write_full(fd, text, n);
        if (r == 0 && st.st_size > (off_t) n && ftruncate(fd, (off_t) n) < 0)
                r = negative_errno();
        if (r == 0 && fdatasync(fd) < 0)
                r = negative_errno();
        return r;
}

/*
 * Make the head name h durably: rewritten in place when it exists, else
 * created atomically (temporary file in the same directory, fsync,
 * rename, fsync directory).  ret_renamed: the head may name h now.
 */
static int head_write(const char *path, const struct link *h, bool *ret_renamed) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        char text[HEAD_MAX];
        mode_t old_umask;
        size_t n;
        int r;

        *ret_renamed = false;
        n = head_format(h, text);
        r = head_rewrite(path, text, n, ret_renamed);
        if (r != -ENOENT)
                return r;
        if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
                return -ENOMEM;
        old_umask = umask(0077);
        fd = mkostemp(tmp, O_CLOEXEC);
        umask(old_umask);
        if (fd < 0)
                return negative_errno();

        r = write_full(fd, text, n);
        if (r == 0 && fsync(fd) < 0)
                r = negative_errno();
        if (r == 0 && close(TAKE_FD(fd)) < 0)
                r = negative_errno();
        if (r == 0 && rename(tmp, path) < 0)
                r = negative_errno();
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        *ret_renamed = true;
        return fsync_parent_dir(path);
}

/* ---- a chain with no records and no head ---- */

/*
 * No head, and a log that is missing (log_missing) or empty: a fresh chain,
 * unless the evidence says it held records.  Then 1 and, in ret, what is
 * missing and why that is no empty chain, in words that follow "the log" or
 * "audit log PATH".  < 0 when the evidence cannot be checked.
 */
static int chain_lost(const struct kc_audit_evidence *e, const char *head_path, bool log_missing,
                      char ret[static KC_AUDIT_REASON_MAX]) {
        char why[KC_AUDIT_REASON_MAX] = "";
        int r;

        if (!e || !e->check)
                return 0;
        r = e->check(e->userdata, why, sizeof(why));
        if (r <= 0)
                return r;
        if (log_missing)
                snprintf(ret, KC_AUDIT_REASON_MAX, "and its head %s are both missing, but %s", head_path, why);
        else
                snprintf(ret, KC_AUDIT_REASON_MAX, "is empty and its head %s is missing, but %s", head_path, why);
        return 1;
}

/* chain_lost() for the chain of a, with a message in err when the evidence cannot be checked. */
static int lost_check(const struct chain *a, bool log_missing, char ret_lost[static KC_AUDIT_REASON_MAX],
                      struct kc_err *err) {
        int r = chain_lost(&a->evidence, a->head_path, log_missing, ret_lost);

        if (r < 0)
                return kc_err_set(err, r, "cannot tell whether audit log %s held records: %s", a->path, strerror(-r));
        return r;
}

/* Starting a new chain silently would hide the loss: only kc_audit_restart() does, with a record of it. */
static int refuse_lost(const struct chain *a, const char *lost, struct kc_err *err) {
        return kc_err_set(err, -EBADMSG, "audit log %s %s: refusing a new chain, see kmscrypt audit restart",
                          a->path, lost);
}

/* ---- the log ---- */

static int log_open_fd(const char *path, int flags, struct kc_err *err) {
        _cleanup_close_ int fd = -1;
        mode_t old_umask;
        struct stat st;
        int r;

        /* 0600 from the first byte: no window in which another user could open it. */
        old_umask = umask(0077);
        fd = open(path, flags | O_CLOEXEC | O_NOCTTY, 0600);
        umask(old_umask);
        if (fd < 0) {
                r = negative_errno();
                if (r == -ENOENT && !(flags & O_CREAT))
                        return r;
                return kc_err_set(err, r, "cannot open audit log %s: %s", path, strerror(-r));
        }
        if (fstat(fd, &st) < 0) {
                r = negative_errno();
                return kc_err_set(err, r, "cannot stat audit log %s: %s", path, strerror(-r));
        }
        /* /dev/null or a FIFO would swallow records while every write "succeeds". */
        if (!S_ISREG(st.st_mode))
                return kc_err_set(err, -EINVAL, "audit log %s is not a regular file", path);
        return TAKE_FD(fd);
}

/* The last want bytes of the log (of the given size) into a fresh buffer. */
static int read_end(int fd, uint64_t size, size_t want, char **ret, struct kc_err *err) {
        _cleanup_free_ char *buf = malloc(want);
        size_t got = 0;

        if (!buf)
                return -ENOMEM;
        while (got < want) {
                ssize_t k = pread(fd, buf + got, want - got, size - want + got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return kc_err_set(err, -EBADMSG, "audit log shrank while being read");
                got += k;
        }
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Records are a few hundred bytes: a page nearly always holds the last one whole. */
#define TAIL_GUESS 4096

/*
 * The last line of a log of the given size (which ends with a newline):
 * into *ret_buf, line at *ret_line of *ret_len bytes, newline excluded.
 * Every append reads it, so a page is read first and the full
 * AUDIT_LINE_MAX window only when the last line is longer than that.
 */
static int read_last_line(int fd, uint64_t size, char **ret_buf, const char **ret_line, size_t *ret_len,
                          struct kc_err *err) {
        _cleanup_free_ char *buf = NULL;
        /* The longest line, its newline, and the newline that ends the line before it. */
        size_t max = size < AUDIT_LINE_MAX + 2 ? size : AUDIT_LINE_MAX + 2;
        size_t want = max < TAIL_GUESS ? max : TAIL_GUESS;
        const char *nl;
        int r;

        for (;;) {
                r = read_end(fd, size, want, &buf, err);
                if (r < 0)
                        return r;
                if (buf[want - 1] != '\n')
                        return kc_err_set(err, -EBADMSG,
                                          "audit log ends with an incomplete line (interrupted write or appended data)");
                nl = memrchr(buf, '\n', want - 1);
                if (nl || want == max)
                        break;
                free(TAKE_PTR(buf));
                want = max;
        }
        if (!nl && want < size)
                return kc_err_set(err, -EBADMSG, "last line of the audit log is longer than %d bytes", AUDIT_LINE_MAX);
        *ret_line = nl ? nl + 1 : buf;
        *ret_len = buf + want - 1 - *ret_line;
        *ret_buf = TAKE_PTR(buf);
        return 0;
}

/* ---- the tail this process last saw ---- */

/* Remember that a log of size bytes ends with line (len bytes, checked) and its head holds head. */
static void cache_set(struct chain *a, uint64_t size, const struct link *last, const char *line, size_t len,
                      const char *head, size_t head_len) {
        struct tail_cache *c = &a->cache;
        char *copy = len <= c->len ? c->line : realloc(c->line, len);

        c->valid = false;
        if (!copy || head_len >= sizeof(c->head))
                return;
        memcpy(copy, line, len);
        c->line = copy;
        c->len = len;
        memcpy(c->head, head, head_len);
        c->head_len = head_len;
        c->last = *last;
        c->size = size;
        c->valid = true;
}

/*
 * Whether a log of size bytes still ends as the cache says, byte for byte:
 * its last line (and the newline before it, unless it is the first), and
 * the head's text.  Then the tail is the cached link, with nothing parsed
 * or hashed.  Anything else (another process appended, someone edited
 * either file) is for load_tail() to judge in full.
 */
static bool cache_holds(const struct chain *a, uint64_t size, struct link *ret) {
        const struct tail_cache *c = &a->cache;
        _cleanup_free_ char *end = NULL;
        char head[HEAD_MAX];
        size_t want;
        int n;

        if (!c->valid || c->size != size)
                return false;
        n = head_read_text(a->head_path, head, NULL);
        if (n < 0 || (size_t) n != c->head_len || memcmp(head, c->head, c->head_len) != 0)
                return false;
        want = c->len + 1 + (size > c->len + 1);
        if (read_end(a->fd, size, want, &end, NULL) < 0)
                return false;
        if (end[want - 1] != '\n' || (want > c->len + 1 && end[0] != '\n') ||
            memcmp(end + want - 1 - c->len, c->line, c->len) != 0)
                return false;
        *ret = c->last;
        return true;
}

/*
 * Whether the log (of size bytes), whose last line is record last_seq, is
 * the head plus one interrupted batch: the lines after the head's record,
 * at most AUDIT_BATCH_MAX, with consecutive seqs, each linked to the one
 * before it, the first to the head's hash.  1 if so, 0 if not, < 0 when
 * the log cannot be read.  A page a line is read first, and the window
 * of the longest lines only when a line does not fit in that.
 */
static int behind_by_a_batch(int fd, uint64_t size, const struct link *head, uint64_t last_seq) {
        uint64_t k = last_seq > head->seq ? last_seq - head->seq : 0;     /* records past the head's */
        size_t windows[2] = { (k + 1) * TAIL_GUESS, k * (AUDIT_LINE_MAX + 1) + 1 };

        if (k == 0 || k > AUDIT_BATCH_MAX)
                return 0;
        for (size_t w = 0; w < ARRAY_SIZE(windows); w++) {
                _cleanup_free_ char *buf = NULL;
                char after_prev[HASH_HEX_LEN + 1] = "";   /* the prev link of the line after this one */
                size_t want = windows[w] < size ? windows[w] : size;
                const char *end;
                int r;

                r = read_end(fd, size, want, &buf, NULL);
                if (r < 0)
                        return r;
                end = buf + want - 1;           /* the log's last newline */
                for (uint64_t seq = last_seq; seq > head->seq; seq--) {
                        const char *nl = memrchr(buf, '\n', end - buf), *line = nl ? nl + 1 : buf;
                        char hash[HASH_HEX_LEN + 1];
                        struct record_view v;

                        if (!nl && want < size)
                                break;          /* a line begins before the window: a larger one */
                        if (parse_record(line, end - line, NULL, &v, NULL) < 0 || v.seq != seq)
                                return 0;
                        if (after_prev[0]) {
                                r = sha256_hex(line, end - line, hash);
                                if (r < 0)
                                        return r;
                                if (!streq(hash, after_prev))
                                        return 0;
                        }
                        memcpy(after_prev, v.prev, sizeof(after_prev));
                        if (seq == head->seq + 1)
                                return streq(after_prev, head->hash);
                        if (!nl)
                                return 0;       /* the log begins before the head's record */
                        end = nl;
                }
        }
        return 0;
}

struct tail {
        struct link last;       /* newest record; seq 0 for an empty log */
        uint64_t size;          /* bytes in the log */
        char lost[KC_AUDIT_REASON_MAX]; /* restarting: why the empty chain is a lost one, "" if it is fresh */
};

/* An empty log: with a head of seq 0, or with none where nothing says the chain held records. */
static int load_empty_tail(struct chain *a, const struct link *head, bool have_head, struct tail *t,
                           struct kc_err *err) {
        bool renamed;
        int r;

        memcpy(t->last.hash, ZERO_HASH, sizeof(t->last.hash));
        if (have_head && head->seq > 0)
                return kc_err_set(err, -EBADMSG,
                                  "audit log %s is empty but its head %s records %" PRIu64 " records: refusing (truncated?)",
                                  a->path, a->head_path, head->seq);
        if (have_head)
                return 0;
        r = lost_check(a, a->created, t->lost, err);
        if (r < 0)
                return r;
        if (r > 0)
                return a->restarting ? 0 : refuse_lost(a, t->lost, err);
        r = head_write(a->head_path, &t->last, &renamed);
        if (r < 0)
                return kc_err_set(err, r, "cannot write audit chain head %s: %s", a->head_path, strerror(-r));
        return 0;
}

/*
 * Under the log's lock: where the chain ends, after checking that the log's
 * last record is the one the head names.  A log one record ahead of its
 * head (a crash between the two writes) gets its head repaired; a fresh
 * pair gets a head of seq 0.  Anything else is refused with -EBADMSG, and
 * so is an empty log without a head when the evidence says records
 * existed, except while restarting: then ret->lost says why, and no head
 * is written (the first record writes it).
 */
static int load_tail(struct chain *a, struct tail *ret, struct kc_err *err) {
        _cleanup_free_ char *buf = NULL;
        struct tail t = { .lost = "" };
        struct link head;
        char head_text[HEAD_MAX];
        const char *line = NULL;
        size_t len = 0, head_len = 0;
        struct record_view v;
        struct stat st;
        bool have_head, renamed;
        struct kc_err why = {};
        int r;

        if (fstat(a->fd, &st) < 0)
                return negative_errno();
        t.size = st.st_size;
        if (cache_holds(a, t.size, &t.last)) {
                *ret = t;
                return 0;
        }
        r = head_read_text(a->head_path, head_text, err);
        if (r < 0 && r != -ENOENT)
                return r;
        have_head = r >= 0;
        if (have_head) {
                head_len = (size_t) r;
                r = head_parse(a->head_path, head_text, head_len, &head, err);
                if (r < 0)
                        return r;
        }

        if (t.size == 0) {
                r = load_empty_tail(a, &head, have_head, &t, err);
                if (r < 0)
                        return r;
                *ret = t;
                return 0;
        }

        r = read_last_line(a->fd, t.size, &buf, &line, &len, err);
        if (r < 0)
                return r;
        r = parse_record(line, len, NULL, &v, &why);
        if (r < 0)
                return kc_err_set(err, r, "last line of audit log %s: %s", a->path, why.msg);
        t.last.seq = v.seq;
        r = sha256_hex(line, len, t.last.hash);
        if (r < 0)
                return r;

        if (!have_head)
                return kc_err_set(err, -EBADMSG,
                                  "audit chain head %s is missing but the log has records: refusing, "
                                  "the newest records may have been removed (see kmscrypt audit verify)",
                                  a->head_path);
        if (head.seq == v.seq && streq(head.hash, t.last.hash)) {
                cache_set(a, t.size, &t.last, line, len, head_text, head_len);
                *ret = t;
                return 0;
        }
        r = behind_by_a_batch(a->fd, t.size, &head, v.seq);
        if (r < 0)
                return kc_err_set(err, r, "cannot read audit log %s: %s", a->path, strerror(-r));
        if (r > 0) {
                log_debug("Audit chain head %s is %" PRIu64 " records behind (interrupted write), repairing",
                          a->head_path, v.seq - head.seq);
                r = head_write(a->head_path, &t.last, &renamed);
                if (r < 0)
                        return kc_err_set(err, r, "cannot repair audit chain head %s: %s", a->head_path, strerror(-r));
                head_len = head_format(&t.last, head_text);
                cache_set(a, t.size, &t.last, line, len, head_text, head_len);
                *ret = t;
                return 0;
        }
        return kc_err_set(err, -EBADMSG,
                          "last record of audit log %s (seq %" PRIu64 ") does not match its chain head %s (seq %" PRIu64 "): "
                          "refusing to append (see kmscrypt audit verify)",
                          a->path, v.seq, a->head_path, head.seq);
}

/* ---- chains: one open log, shared by a process's handles ---- */

static void chain_free(struct chain *a) {
        if (!a)
                return;
        if (a->fd >= 0)
                close(a->fd);
        pthread_mutex_destroy(&a->lock);
        pthread_cond_destroy(&a->idle);
        free(a->cache.line);
        free(a->path);
        free(a->head_path);
        free(a);
}
DEFINE_CLEANUP_FUNC(struct chain *, chain_free)

/* A chain on path and head_path, its log not opened yet. */
static int chain_new(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                     struct chain **ret) {
        _cleanup_(chain_freep) struct chain *a = NULL;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->refs = 1;
        a->fd = -1;
        a->lock = (pthread_mutex_t) PTHREAD_MUTEX_INITIALIZER;
        a->idle = (pthread_cond_t) PTHREAD_COND_INITIALIZER;
        a->queue_end = &a->queue;
        a->path = strdup(path);
        a->head_path = strdup(head_path);
        if (!a->path || !a->head_path)
                return -ENOMEM;
        if (evidence)
                a->evidence = *evidence;
        *ret = TAKE_PTR(a);
        return 0;
}

static void chain_put(struct chain *a) {
        struct chain **p;

        if (!a)
                return;
        pthread_mutex_lock(&chains_lock);
        if (--a->refs > 0) {
                pthread_mutex_unlock(&chains_lock);
                return;
        }
        /* kc_audit_restart()'s own chain is not in the list: then nothing matches. */
        for (p = &chains; *p; p = &(*p)->next)
                if (*p == a) {
                        *p = a->next;
                        break;
                }
        pthread_mutex_unlock(&chains_lock);
        chain_free(a);
}

enum missing_log {
        MISSING_FRESH,          /* no head either, nothing says records existed */
        MISSING_LOST,           /* no head either, and the evidence says records existed */
        MISSING_HEAD_THERE,     /* the head is there: load_tail() judges them together */
};

/* The log of a is missing: what that is (enum missing_log), or < 0 when the evidence cannot be checked. */
static int missing_log(const struct chain *a, char ret_lost[static KC_AUDIT_REASON_MAX], struct kc_err *err) {
        struct link head;
        int r;

        if (head_read(a->head_path, &head, NULL) != -ENOENT)
                return MISSING_HEAD_THERE;
        r = lost_check(a, true, ret_lost, err);
        return r <= 0 ? r : MISSING_LOST;
}

/* The open file of a's log, created now. */
static int log_create(struct chain *a, struct kc_err *err) {
        _cleanup_close_ int fd = log_open_fd(a->path, O_RDWR | O_APPEND | O_CREAT, err);
        int r;

        if (fd < 0)
                return fd;
        /*
         * The head, written with a sync of its own directory, will soon name
         * records of this file: a crash must not keep the head and lose the
         * log's name, which verify would rightly call a removed log.
         */
        r = fsync_parent_dir(a->path);
        if (r < 0)
                return kc_err_set(err, r, "cannot sync the directory of audit log %s: %s", a->path, strerror(-r));
        a->created = true;
        return TAKE_FD(fd);
}

/*
 * Open the log of a, creating it only where that does not start a new
 * chain over a lost one: that is refused before anything is created, so
 * the state stays what it was, for verify to report and for a restore.
 */
static int log_open_checked(struct chain *a, struct kc_err *err) {
        char lost[KC_AUDIT_REASON_MAX];
        int r;

        r = log_open_fd(a->path, O_RDWR | O_APPEND, err);
        if (r != -ENOENT)
                return r;
        r = missing_log(a, lost, err);
        if (r < 0)
                return r;
        if (r == MISSING_LOST)
                return refuse_lost(a, lost, err);
        return log_create(a, err);
}

/* The process's chain on path and head_path, opened now if it has none: a new reference. */
static int chain_get(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                     struct chain **ret, struct kc_err *err) {
        _cleanup_(chain_freep) struct chain *a = NULL;
        int r;

        pthread_mutex_lock(&chains_lock);
        for (struct chain *c = chains; c; c = c->next)
                if (streq(c->path, path) && streq(c->head_path, head_path)) {
                        c->refs++;
                        pthread_mutex_unlock(&chains_lock);
                        *ret = c;
                        return 0;
                }
        r = chain_new(path, head_path, evidence, &a);
        if (r >= 0)
                r = log_open_checked(a, err);
        if (r >= 0) {
                a->fd = r;
                a->pid = getpid();
                a->next = chains;
                chains = a;
                *ret = TAKE_PTR(a);
        }
        pthread_mutex_unlock(&chains_lock);
        return r < 0 ? r : 0;
}

/*
 * A forked child inherits its parent's chains as the fork found them: the
 * parent's open file, whose flock is the parent's too, and maybe a batch
 * half written and records queued by threads the child does not have.
 * Start afresh; the next owner opens the log again.  Mutex held.
 */
static void chain_forget_parent_locked(struct chain *a) {
        if (a->pid == getpid())
                return;
        a->pid = getpid();
        a->reopen = true;
        a->busy = false;
        a->queue = NULL;
        a->queue_end = &a->queue;
        a->cache.valid = false;
        a->idle = (pthread_cond_t) PTHREAD_COND_INITIALIZER;   /* its waiters were the parent's */
}

/* Take the chain's file for this thread, for handle h (mutex held, dropped while waiting). */
static void chain_own_locked(struct chain *a, const struct kc_audit *h) {
        chain_forget_parent_locked(a);
        while (a->busy)
                pthread_cond_wait(&a->idle, &a->lock);
        a->busy = true;
        /* Whose evidence: the owner's.  Every handle on one chain names the same keystore in practice. */
        a->evidence = h->evidence;
}

static void chain_release_locked(struct chain *a) {
        a->busy = false;
        pthread_cond_broadcast(&a->idle);
}

/*
 * Owner only: a forked child's own open file of the log, and so its own
 * flock.  With follow_path, also the file the path names now, where that
 * is another than the one open (a broken chain moved aside and kmscrypt
 * audit restart run): a handle opened now writes where the path leads, as
 * it always did, and takes the process's other handles with it.  Writes
 * alone never move: a handle keeps writing to the log it was opened on.
 */
static int chain_reopen(struct chain *a, bool follow_path, struct kc_err *err) {
        struct stat open_st, path_st;
        int fd, r;

        if (!a->reopen && !follow_path)
                return 0;
        if (!a->reopen) {
                if (fstat(a->fd, &open_st) < 0) {
                        r = negative_errno();
                        return kc_err_set(err, r, "cannot stat audit log %s: %s", a->path, strerror(-r));
                }
                if (stat(a->path, &path_st) == 0 && path_st.st_dev == open_st.st_dev &&
                    path_st.st_ino == open_st.st_ino)
                        return 0;
        }
        fd = log_open_checked(a, err);
        if (fd < 0)
                return fd;
        close(a->fd);
        a->fd = fd;
        a->reopen = false;
        a->cache.valid = false;
        return 0;
}

/*
 * Owner only: under the log's flock, the tail, checked, and fn (NULL:
 * none) to append after it.  follow_path: see chain_reopen().
 */
static int chain_locked_do(struct chain *a, bool follow_path,
                           int (*fn)(struct chain *a, const struct tail *t, void *userdata), void *userdata,
                           struct kc_err *err) {
        struct tail t;
        int r;

        r = chain_reopen(a, follow_path, err);
        if (r < 0)
                return r;
        r = flock_retry(a->fd, LOCK_EX);
        if (r < 0)
                return kc_err_set(err, r, "cannot lock audit log %s: %s", a->path, strerror(-r));
        r = load_tail(a, &t, err);
        if (r >= 0 && fn)
                r = fn(a, &t, userdata);
        (void) flock(a->fd, LOCK_UN);
        return r;
}

/* Check that the chain ends where its head says, as every append does first. */
static int chain_check(struct chain *a, const struct kc_audit *h, struct kc_err *err) {
        int r;

        pthread_mutex_lock(&a->lock);
        chain_own_locked(a, h);
        pthread_mutex_unlock(&a->lock);
        r = chain_locked_do(a, true, NULL, NULL, err);
        pthread_mutex_lock(&a->lock);
        chain_release_locked(a);
        pthread_mutex_unlock(&a->lock);
        return r;
}

void kc_audit_close(struct kc_audit *h) {
        if (!h)
                return;
        chain_put(h->chain);
        free(h);
}

int kc_audit_open(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                  struct kc_audit **ret, struct kc_err *err) {
        _cleanup_(kc_audit_closep) struct kc_audit *h = NULL;
        int r;

        if (!path || !head_path || !ret)
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        if (evidence)
                h->evidence = *evidence;
        r = chain_get(path, head_path, evidence, &h->chain, err);
        if (r < 0)
                return r;
        r = chain_check(h->chain, h, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

/* ---- appending a batch ---- */

/* Give a rolled-back batch up for good: the operations it describes were not released. */
static void log_rollback(struct chain *a, uint64_t size) {
        if (ftruncate(a->fd, size) < 0 || fsync(a->fd) < 0)
                log_debug("Cannot roll back audit log %s to %" PRIu64 " bytes: %s", a->path, size, strerror(errno));
}

/* Every record of batch not yet failed fails with r, its line not written. */
static int batch_fail(struct pending *batch, int r) {
        for (struct pending *p = batch; p; p = p->next)
                if (p->result >= 0) {
                        free(p->line);
                        p->line = NULL;
                        p->result = r;
                }
        return r;
}

/* The lines of a batch, each with its newline, for one write. */
struct batch_text {
        char *buf;
        size_t len, size;
};

/* Format p's record as the line after *next, add it to text, and make it the new *next. */
static int batch_add(struct pending *p, struct link *next, struct batch_text *text) {
        struct link l = { .seq = next->seq + 1 };
        size_t len;
        int r;

        r = build_line(p->rec, l.seq, next->hash, &p->line, &len);
        if (r < 0)
                return log_debug_errno(r, "Cannot format audit record: %m");
        r = sha256_hex(p->line, len, l.hash);
        if (r >= 0 && text->len + len + 1 > text->size) {
                size_t size = 2 * text->size > text->len + len + 1 ? 2 * text->size : text->len + len + 1;
                char *buf = realloc(text->buf, size);

                r = buf ? 0 : -ENOMEM;
                if (buf) {
                        text->buf = buf;
                        text->size = size;
                }
        }
        if (r < 0) {
                free(p->line);
                p->line = NULL;
                return r;
        }
        memcpy(text->buf + text->len, p->line, len);
        text->buf[text->len + len] = '\n';
        text->len += len + 1;
        *next = l;
        return 0;
}

/*
 * Append the records of batch (a list of struct pending) after the tail t,
 * which load_tail() just found: all lines in one write and one fsync, then
 * one update of the head.  A record that cannot be formatted fails alone;
 * a write or flush that fails fails them all and rolls the log back.
 */
static int append_batch(struct chain *a, const struct tail *t, void *userdata) {
        _cleanup_free_ char *buf = NULL;
        struct pending *batch = userdata, *last = NULL;
        struct batch_text text = {};
        struct link next = t->last;
        char head[HEAD_MAX];
        size_t head_len;
        bool renamed;
        int r;

        for (struct pending *p = batch; p; p = p->next) {
                p->result = batch_add(p, &next, &text);
                if (p->result >= 0)
                        last = p;
        }
        buf = text.buf;
        if (!last)
                return 0;

        r = write_full(a->fd, text.buf, text.len);
        if (r == 0 && fsync(a->fd) < 0)
                r = negative_errno();
        if (r < 0) {
                log_rollback(a, t->size);
                return batch_fail(batch, log_debug_errno(r, "Cannot append to audit log %s: %m", a->path));
        }
        kc_fault_point("audit:after-append");
        r = head_write(a->head_path, &next, &renamed);
        if (r < 0) {
                /* Once renamed, log and head agree; only the head's durability is in doubt. */
                if (!renamed)
                        log_rollback(a, t->size);
                return batch_fail(batch, log_debug_errno(r, "Cannot update audit chain head %s: %m", a->head_path));
        }
        head_len = head_format(&next, head);
        cache_set(a, t->size + text.len, &next, last->line, strlen(last->line), head, head_len);
        return 0;
}

/* Write the batch as the chain's owner: each record gets its result. */
static void write_batch(struct chain *a, struct pending *batch) {
        struct kc_err err = {};
        int r;

        r = chain_locked_do(a, false, append_batch, batch, &err);
        if (r < 0) {
                if (err.msg[0])
                        log_debug("Audit log refused: %s", err.msg);
                batch_fail(batch, r);
        }
}

/* The queue's first AUDIT_BATCH_MAX records, as a list of their own (mutex held). */
static struct pending *batch_take_locked(struct chain *a) {
        struct pending *batch = a->queue, **cut = &a->queue;

        for (unsigned n = 0; *cut && n < AUDIT_BATCH_MAX; n++)
                cut = &(*cut)->next;
        a->queue = *cut;
        *cut = NULL;
        if (!a->queue)
                a->queue_end = &a->queue;
        return batch;
}

/*
 * Group commit: a writer queues its record, and whichever writer finds the
 * chain's file free takes the records queued by then (AUDIT_BATCH_MAX at
 * most) and writes them as one batch, while the writers that queued after it wait for the next.
 * Each returns once its own record is durable or has failed: no record is
 * released before its flush, as if each were written alone.
 */
int kc_audit_write(struct kc_audit *h, const struct kc_audit_record *rec) {
        struct pending p = { .rec = rec };
        struct chain *a;

        if (!h || !rec || !rec->operation || !rec->operation[0])
                return -EINVAL;
        a = h->chain;
        pthread_mutex_lock(&a->lock);
        chain_forget_parent_locked(a);
        *a->queue_end = &p;
        a->queue_end = &p.next;
        while (!p.done) {
                struct pending *batch, *next;

                if (a->busy) {
                        pthread_cond_wait(&a->idle, &a->lock);
                        continue;
                }
                chain_own_locked(a, h);
                batch = batch_take_locked(a);
                pthread_mutex_unlock(&a->lock);
                write_batch(a, batch);
                pthread_mutex_lock(&a->lock);
                /* A record's writer may return, and its record go, once done is set: next first. */
                for (struct pending *q = batch; q; q = next) {
                        next = q->next;
                        q->done = true;
                }
                chain_release_locked(a);
        }
        pthread_mutex_unlock(&a->lock);
        /*
         * The syslog copy goes out after the lock is dropped: a send to a
         * busy journal can block, and every attach of this host, in this
         * process and in others, waits for the audit log.
         */
        if (p.line)
                syslog(LOG_AUTHPRIV | LOG_INFO, "%s", p.line);
        free(p.line);
        return p.result;
}

/* Restarting: the first record of the new chain, when load_tail() found it lost. */
static int append_restart(struct chain *a, const struct tail *t, void *userdata) {
        struct pending *p = userdata;
        char detail[KC_AUDIT_REASON_MAX + 64];
        struct kc_audit_record rec = *p->rec;

        if (!t->lost[0])
                return 0;
        snprintf(detail, sizeof(detail), "the log %s; the records before this one are lost", t->lost);
        rec.detail = detail;
        p->rec = &rec;
        (void) append_batch(a, t, p);
        p->rec = NULL;
        return p->result;
}

int kc_audit_restart(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                     const struct kc_caller *caller, struct kc_err *err) {
        _cleanup_(chain_freep) struct chain *a = NULL;
        char lost[KC_AUDIT_REASON_MAX];
        struct kc_audit_record rec = { .operation = "RestartChain", .caller = caller };
        struct pending p = { .rec = &rec };
        int r;

        if (!path || !head_path)
                return -EINVAL;
        /* A chain of its own, not the process's shared one: its rule for a lost chain differs. */
        r = chain_new(path, head_path, evidence, &a);
        if (r < 0)
                return r;
        a->restarting = true;
        r = log_open_fd(path, O_RDWR | O_APPEND, err);
        if (r == -ENOENT) {
                /* Where nothing was lost, a missing log stays missing: nothing to restart. */
                r = missing_log(a, lost, err);
                if (r == MISSING_FRESH)
                        return 0;
                if (r >= 0)
                        r = log_create(a, err);
        }
        if (r < 0)
                return r;
        a->fd = r;
        a->pid = getpid();

        r = chain_locked_do(a, false, append_restart, &p, err);
        if (r < 0 && p.result < 0)
                kc_err_set(err, r, "cannot write the first record of a new chain to %s: %s", path, strerror(-r));
        /* Not a use of a key, but the trace of records lost: a warning in the journal. */
        if (p.line)
                syslog(LOG_AUTHPRIV | LOG_WARNING, "%s", p.line);
        r = r < 0 ? r : p.line != NULL;
        free(p.line);
        return r;
}

/* ---- reading: line reader, verify, foreach ---- */

struct line_reader {
        int fd;
        uint64_t end;           /* read no further: the size of the log when the walk began */
        uint64_t off;           /* file offset of buf[0] */
        size_t len, pos;        /* bytes in buf, start of the next line */
        char buf[AUDIT_LINE_MAX + 1];
};

/*
 * Next line, without its newline: 1, or 0 at the end.  -ENODATA for a last
 * line without a newline, -E2BIG for a line longer than AUDIT_LINE_MAX.
 */
static int reader_next(struct line_reader *r, const char **ret, size_t *ret_len) {
        for (;;) {
                char *start = r->buf + r->pos, *nl = memchr(start, '\n', r->len - r->pos);
                uint64_t want;
                ssize_t k;

                if (nl) {
                        *ret = start;
                        *ret_len = nl - start;
                        r->pos = nl - r->buf + 1;
                        return 1;
                }
                memmove(r->buf, start, r->len - r->pos);
                r->off += r->pos;
                r->len -= r->pos;
                r->pos = 0;
                if (r->len == sizeof(r->buf))
                        return -E2BIG;
                want = sizeof(r->buf) - r->len;
                if (want > r->end - (r->off + r->len))
                        want = r->end - (r->off + r->len);
                if (want == 0)
                        return r->len == 0 ? 0 : -ENODATA;
                k = pread(r->fd, r->buf + r->len, want, r->off + r->len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)     /* shorter than it was: stop where it ends now */
                        r->end = r->off + r->len;
                r->len += k;
        }
}

/*
 * Open a log for reading and note, under a shared lock so that no write is
 * half done, its size and (if head_path) its head.  -ENOENT if there is no log.
 */
static int reader_open(const char *path, const char *head_path, struct line_reader **ret,
                       struct link *ret_head, bool *ret_have_head, struct kc_err *err) {
        _cleanup_free_ struct line_reader *rd = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;
        int r;

        fd = log_open_fd(path, O_RDONLY, err);
        if (fd < 0)
                return fd;
        rd = calloc(1, sizeof(*rd));
        if (!rd)
                return -ENOMEM;
        r = flock_retry(fd, LOCK_SH);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                r = negative_errno();
        if (r == 0 && head_path) {
                r = head_read(head_path, ret_head, err);
                *ret_have_head = r == 0;
                if (r == -ENOENT)
                        r = 0;
        }
        (void) flock(fd, LOCK_UN);
        if (r < 0)
                return r;
        rd->end = st.st_size;
        rd->fd = TAKE_FD(fd);
        *ret = TAKE_PTR(rd);
        return 0;
}

static void reader_free(struct line_reader *rd) {
        if (!rd)
                return;
        if (rd->fd >= 0)
                close(rd->fd);
        free(rd);
}
DEFINE_CLEANUP_FUNC(struct line_reader *, reader_free)

static int verify_fail(struct kc_audit_verify *v, uint64_t line, const char *fmt, ...) _printf_(3, 4);
static int verify_fail(struct kc_audit_verify *v, uint64_t line, const char *fmt, ...) {
        va_list ap;

        v->bad_line = line;
        /* Only the lines before a bad one count as verified. */
        if (line > 0 && v->records >= line)
                v->records = line - 1;
        va_start(ap, fmt);
        vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/*
 * A prev link in line n did not match the hash of line n-1: either line n-1
 * was changed or line n was.  Line n is intact when the line after it links
 * to it (or, for the last line, the head does).
 */
static bool line_is_linked(struct line_reader *rd, const char *hash, uint64_t seq,
                           const struct link *head, bool have_head) {
        struct record_view next;
        const char *line;
        size_t len;
        int r;

        r = reader_next(rd, &line, &len);
        if (r == 0)
                return have_head && head->seq == seq && streq(head->hash, hash);
        return r > 0 && parse_record(line, len, NULL, &next, NULL) == 0 && streq(next.prev, hash);
}

/*
 * Walk every line; on success ret_last holds the hash of the last line, and
 * ret_at_head that of line head->seq (zeros for 0, "" past the end).
 */
static int verify_walk(struct line_reader *rd, const struct link *head, bool have_head,
                       struct kc_audit_verify *v, char *ret_last, char *ret_at_head) {
        char prev[HASH_HEX_LEN + 1] = ZERO_HASH;
        char hash[HASH_HEX_LEN + 1];

        /* The head of a chain with no records names "line 0", whose hash is zeros. */
        strcpy(ret_at_head, have_head && head->seq == 0 ? ZERO_HASH : "");
        for (uint64_t n = 1;; n++) {
                struct record_view rv;
                struct kc_err why = {};
                const char *line;
                size_t len;
                int r;

                r = reader_next(rd, &line, &len);
                if (r == 0)
                        break;
                if (r == -ENODATA)
                        return verify_fail(v, n, "incomplete last line (no newline): interrupted write or appended data");
                if (r == -E2BIG)
                        return verify_fail(v, n, "line longer than %d bytes", AUDIT_LINE_MAX);
                if (r < 0)
                        return r;
                if (parse_record(line, len, NULL, &rv, &why) < 0)
                        return verify_fail(v, n, "%s", why.msg);
                if (rv.seq != n)
                        return verify_fail(v, n, "seq %" PRIu64 " where %" PRIu64 " was expected: "
                                           "a record was removed, inserted or moved here", rv.seq, n);
                r = sha256_hex(line, len, hash);
                if (r < 0)
                        return r;
                if (!streq(rv.prev, prev)) {
                        if (n > 1 && line_is_linked(rd, hash, n, head, have_head))
                                return verify_fail(v, n - 1, "line %" PRIu64 " was changed: its hash does not match "
                                                   "the prev link in line %" PRIu64, n - 1, n);
                        return verify_fail(v, n, "prev link does not match the hash of the line before");
                }
                memcpy(prev, hash, sizeof(prev));
                if (have_head && head->seq == n)
                        memcpy(ret_at_head, hash, sizeof(hash));
                v->records = n;
        }
        memcpy(ret_last, prev, sizeof(prev));
        return 0;
}

/* The chain is intact line by line: does it end where the head says? */
static int verify_head(const struct link *head, bool have_head, const char *last, const char *at_head,
                       struct kc_audit_verify *v) {
        uint64_t n = v->records;

        if (!have_head)
                return n == 0 ? 0 : verify_fail(v, 0, "chain head missing: the newest records may have been removed");
        if (head->seq > n)
                return verify_fail(v, n + 1, "log ends after record %" PRIu64 " but the head records %" PRIu64
                                   ": the newest records were removed", n, head->seq);
        if (head->seq == n)
                return streq(head->hash, last) ? 0 :
                        verify_fail(v, n, "line %" PRIu64 " does not match the hash in the head (changed?)", n);
        if (n - head->seq <= AUDIT_BATCH_MAX && streq(head->hash, at_head)) {
                snprintf(v->reason, sizeof(v->reason), "head %" PRIu64 " record%s behind (interrupted write); "
                         "the next open repairs it", n - head->seq, n - head->seq == 1 ? "" : "s");
                return 0;
        }
        return verify_fail(v, head->seq + 1, "head records %" PRIu64 " of %" PRIu64 " records or does not match: "
                           "it was rolled back or replaced", head->seq, n);
}

/*
 * No head and no records (log_missing: not even a log): fresh, 0, unless
 * the evidence says records existed: then the chain was removed or emptied.
 */
static int verify_lost(const struct kc_audit_evidence *e, const char *head_path, bool log_missing,
                       struct kc_audit_verify *v) {
        char lost[KC_AUDIT_REASON_MAX];
        int r = chain_lost(e, head_path, log_missing, lost);

        if (r < 0) {
                snprintf(v->reason, sizeof(v->reason), "cannot tell whether the chain held records: %s", strerror(-r));
                return r;
        }
        if (r == 0)
                return 0;
        return verify_fail(v, 0, "the log %s: the chain was %s, not a fresh one", lost,
                           log_missing ? "removed" : "emptied");
}

/* No log: a head of seq 0 or none at all is a fresh chain, unless the evidence says otherwise. */
static int verify_no_log(const char *head_path, const struct kc_audit_evidence *evidence, struct kc_audit_verify *v,
                         struct kc_err *err) {
        struct link head;
        int r = head_read(head_path, &head, err);

        if (r == -ENOENT)
                return verify_lost(evidence, head_path, true, v);
        if (r == 0 && head.seq > 0)
                return verify_fail(v, 1, "log missing but the head records %" PRIu64 " records", head.seq);
        return r;
}

int kc_audit_verify(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                    struct kc_audit_verify *ret) {
        _cleanup_(reader_freep) struct line_reader *rd = NULL;
        struct kc_audit_verify v = {};
        char last[HASH_HEX_LEN + 1], at_head[HASH_HEX_LEN + 1];
        struct link head = {};
        bool have_head = false;
        struct kc_err err = {};
        int r;

        if (!path || !head_path || !ret)
                return -EINVAL;
        r = reader_open(path, head_path, &rd, &head, &have_head, &err);
        if (r == -ENOENT)
                r = verify_no_log(head_path, evidence, &v, &err);
        else {
                if (r == 0)
                        r = verify_walk(rd, &head, have_head, &v, last, at_head);
                if (r == 0)
                        r = verify_head(&head, have_head, last, at_head, &v);
                if (r == 0 && !have_head && v.records == 0)
                        r = verify_lost(evidence, head_path, false, &v);
        }
        /* A head (or log) that is not one: its reader said what is wrong with it. */
        if (r == -EBADMSG && err.error == -EBADMSG)
                snprintf(v.reason, sizeof(v.reason), "%.*s", (int) sizeof(v.reason) - 1, err.msg);
        *ret = v;
        return r;
}

static bool record_matches(struct json_object *o, const struct record_view *v, const struct kc_audit_filter *f) {
        const char *key_id;

        if (!f)
                return true;
        if ((f->since != 0 && v->time < f->since) || (f->until_set && v->time >= f->until))
                return false;
        if (f->key_id) {
                key_id = json_get_string(o, "key_id");
                if (!key_id || !(streq(key_id, f->key_id) || (f->key_ref && streq(key_id, f->key_ref))))
                        return false;
        }
        return true;
}

int kc_audit_foreach(const char *path, const struct kc_audit_filter *filter,
                     int (*fn)(struct json_object *record, void *userdata), void *userdata) {
        _cleanup_(reader_freep) struct line_reader *rd = NULL;
        int r;

        if (!path || !fn)
                return -EINVAL;
        r = reader_open(path, NULL, &rd, NULL, NULL, NULL);
        if (r == -ENOENT)
                return 0;       /* no log yet: no records */
        if (r < 0)
                return r;

        for (uint64_t n = 1;; n++) {
                _cleanup_json_ struct json_object *o = NULL;
                struct record_view v;
                const char *line;
                size_t len;

                r = reader_next(rd, &line, &len);
                if (r == 0)
                        return 0;
                if (r < 0)
                        return log_debug_errno(r == -ENODATA || r == -E2BIG ? -EBADMSG : r,
                                               "Audit log %s: cannot read line %" PRIu64 ": %m", path, n);
                r = parse_record(line, len, &o, &v, NULL);
                if (r < 0)
                        return log_debug_errno(r, "Audit log %s: line %" PRIu64 " is not a record", path, n);
                if (!record_matches(o, &v, filter))
                        continue;
                r = fn(o, userdata);
                if (r < 0)
                        return r;
        }
}
