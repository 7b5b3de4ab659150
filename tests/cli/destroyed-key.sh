#!/bin/sh
# A key whose deletion window has passed is destroyed at its next use and is
# refused from then on (exit 4, audited, keystore unchanged by the refusal).
# time() runs eight days ahead through the fake-time shim (LD_PRELOAD).
. "$(dirname "$0")/lib.sh"

FAKE=$top_builddir/tests/cli/fake-time.so
[ -f "$FAKE" ] || { echo "SKIP: no $FAKE"; exit 77; }
if ldd "$KMSCRYPT" 2>/dev/null | grep -q libasan; then
        echo "SKIP: an ASan build cannot take an LD_PRELOAD shim"; exit 77
fi

CTX=db-id=db-1,volume-id=vol-2
expect 0 "create key" key create --alias alias/doomed --json
ID=$(json 'j["KeyMetadata"]["KeyId"]')
expect 0 "generate" kms generate-data-key --key alias/doomed --context "$CTX" --json
BLOB=$(json 'j["CiphertextBlob"]')
expect 0 "schedule deletion" key schedule-deletion alias/doomed --pending-window-in-days 7

export KC_TEST_TIME_OFFSET=$((8 * 86400))
export LD_PRELOAD="$FAKE"
# Reading the audit trail changes nothing: the alias is looked up, the key not destroyed.
before=$(snapshot "$KS")
lines=$(audit_lines)
expect 0 "audit list --key of a key past its window" audit list --key alias/doomed --json
json_is 'sorted(set(r["key_id"] for r in j["Records"]))' "['$ID']"
check "audit list --key: keystore and audit log untouched" test "$before" = "$(snapshot "$KS")" -a "$(audit_lines)" = "$lines"
expect 0 "eight days later the key is destroyed" key describe "$ID" --json
json_is 'j["KeyMetadata"]["KeyState"]' Destroyed
json_is 'j["KeyMetadata"]["Enabled"]' false
refused 4 "destroyed key (decrypt)" Decrypt kms decrypt --ciphertext-blob "$BLOB" --context "$CTX"
refused 4 "destroyed key (generate)" GenerateDataKey kms generate-data-key --key "$ID" --context "$CTX"
refused 4 "destroyed key (re-encrypt)" ReEncrypt kms re-encrypt --ciphertext-blob "$BLOB" --context "$CTX"
refused 4 "destroyed key (cancel deletion)" CancelKeyDeletion key cancel-deletion "$ID"
refused 4 "destroyed key (enable)" EnableKey key enable "$ID"
refused 3 "its alias is gone" DescribeKey key describe alias/doomed
unset LD_PRELOAD KC_TEST_TIME_OFFSET

finish
