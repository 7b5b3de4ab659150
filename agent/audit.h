/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Audit trail: one JSON line per use of a CMK or change to one, fsynced,
 * hash-chained, and also sent to syslog (the journal).  Format and chain
 * rule in docs/audit.md.
 *
 * Each record carries "seq" (1, 2, ...), "prev" (hex SHA-256 of the
 * previous line, 64 zeros for the first) and its own fields; the chain head
 * (seq and hash of the newest line) is kept in a separate file, by default
 * inside the keystore, so that removing the newest records is detected too.
 *
 * Writing is fail-closed: if the record cannot be made durable,
 * kc_audit_write() returns an error and the caller must not release the
 * result of the operation.
 */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "agent/caller.h"
#include "agent/context.h"
#include "lib/error.h"

struct kc_audit;

struct kc_audit_record {
        const char *operation;          /* "GenerateDataKey", "Decrypt", "ReEncrypt", "CreateKey", ... */
        const char *key_id;             /* CMK id, NULL if none */
        uint32_t key_version;           /* 0: not applicable */
        const struct kc_context *context; /* NULL: none */
        const struct kc_caller *caller; /* NULL: unknown */
        const char *volume;             /* LUKS UUID or mapping name, NULL if none */
        int result;                     /* 0 or negative errno */
        const char *error;              /* message when result < 0 */
        bool intent;                    /* write-ahead record of a change about to be made:
                                         * "result":"pending", result and error ignored */
        const char *detail;             /* free text (never secret), may be NULL */
};

/* A reason names the log, its head and the evidence (a keystore): as long as any message. */
#define KC_AUDIT_REASON_MAX KC_ERR_MSG_MAX

/*
 * What says that a chain held records, for the one state in which the chain
 * cannot tell by itself: no head, and a log that is missing or empty.  That
 * is a fresh chain, unless check() says otherwise: 1 with one line in buf
 * naming the evidence ("keystore DIR holds 3 keys, whose creation was
 * audited"), 0 when nothing says records existed, a negative errno when it
 * cannot tell.  kc_kms_audit_evidence() gives the KMS layer's.  userdata
 * must outlive every handle opened with it.
 */
struct kc_audit_evidence {
        int (*check)(const void *userdata, char *buf, size_t size);
        const void *userdata;
};

/*
 * Open (creating 0600 files if needed) the log at path with its chain head at
 * head_path.  Checks that the log's last record matches the head; a log
 * ahead of its head by the records of one batch, chained from it (a crash
 * between the two writes), is accepted and the head repaired.  A process's
 * handles on one log share it, and their records are written in batches
 * (kc_audit_write).  A mismatch is -EBADMSG (tampering):
 * refuse to append.  So is a chain whose log is missing or empty and whose
 * head is missing when evidence (NULL: none) says it held records: nothing
 * is created then, and only kc_audit_restart() starts a new chain there.
 */
int kc_audit_open(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                  struct kc_audit **ret, struct kc_err *err);
void kc_audit_close(struct kc_audit *a);
DEFINE_CLEANUP_FUNC(struct kc_audit *, kc_audit_close)
#define _cleanup_audit_ _cleanup_(kc_audit_closep)

/*
 * Append one record durably (write, fsync, head update), in one batch with
 * the records other threads of this process write meanwhile; returns once
 * this record is durable, or has failed.
 */
int kc_audit_write(struct kc_audit *a, const struct kc_audit_record *r);

/*
 * Where the chain at path has no records and no head but evidence says it
 * held records (the state kc_audit_open() refuses): start a new chain whose
 * first record, "RestartChain" by caller, names what was lost.  1 when it
 * did; 0 when there was nothing to restart: a chain that is there, checked
 * as kc_audit_open() checks it, or a fresh one (a missing log is not
 * created); -EBADMSG and the reason in err for a chain that is there but
 * broken, which must be moved aside first.
 */
int kc_audit_restart(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                     const struct kc_caller *caller, struct kc_err *err);

struct kc_audit_verify {
        uint64_t records;       /* records that verified */
        uint64_t bad_line;      /* first bad line (1-based), 0 if none or the whole chain */
        char reason[KC_AUDIT_REASON_MAX]; /* what is wrong with it, or with the head */
};

/*
 * Verify the whole chain and the head. 0 when intact, -EBADMSG when not,
 * another negative errno when it cannot be read; ret is filled in every
 * case.  A log that is missing or empty without a head is intact (fresh)
 * unless evidence (NULL: none) says the chain held records.
 */
int kc_audit_verify(const char *path, const char *head_path, const struct kc_audit_evidence *evidence,
                    struct kc_audit_verify *ret);

struct kc_audit_filter {
        const char *key_id;     /* NULL: any */
        /* With key_id, NULL or another name of that key that records may carry: a refusal
         * recorded before the key was looked up names it as it was given ("alias/pg"). */
        const char *key_ref;
        time_t since;           /* 0: any */
        bool until_set;
        time_t until;           /* with until_set: only records before it */
};

/*
 * The TIME of audit list --since and --until (kmscrypt(8)) as seconds: UTC
 * "2026-11-27", "2026-11-27T23:45:48Z" (the Z required), or "@SECONDS"
 * since the epoch.  Only dates that exist, spelled with every digit and a
 * year of four, as records' times are read (lib/time-util.h): -EINVAL for
 * 2026-02-31, 2026-1-5, 2026-11-27T23:45:48, 10000-01-01 or a time before
 * the epoch.
 */
int kc_audit_parse_list_time(const char *text, time_t *ret);

/* Call fn for each record (parsed JSON object) that matches filter. fn returns < 0 to stop. */
int kc_audit_foreach(const char *path, const struct kc_audit_filter *filter,
                     int (*fn)(struct json_object *record, void *userdata), void *userdata);
