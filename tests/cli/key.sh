#!/bin/sh
# kmscrypt key ...: every subcommand's happy path, text and --json.
. "$(dirname "$0")/lib.sh"

expect 0 "key create" --json key create --alias alias/pgdata --description "PostgreSQL db-1"
json_is 'j["KeyMetadata"]["KeyState"]' Enabled
json_is 'j["KeyMetadata"]["Enabled"]' true
json_is 'j["KeyMetadata"]["Description"]' "PostgreSQL db-1"
json_is 'j["KeyMetadata"]["KeyVersion"]' 1
json_is 'j["Aliases"][0]["AliasName"]' alias/pgdata
ID=$(json 'j["KeyMetadata"]["KeyId"]')
json_is 'j["KeyMetadata"]["Arn"]' "local:$ID"
json_is 'j["Aliases"][0]["TargetKeyId"]' "$ID"
check "creation date is ISO 8601 UTC" sh -c "echo '$(json 'j["KeyMetadata"]["CreationDate"]')' | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'"

expect 0 "key create without alias" key create
check "text output names the key" grep -q '^KeyId: ' "$T/out"
ID2=$(sed -n 's/^KeyId: *//p' "$T/out")

expect 0 "key list --json" key list --json
json_is 'len(j["Keys"])' 2
json_is 'sorted(k["KeyId"] for k in j["Keys"]) == sorted(["'"$ID"'", "'"$ID2"'"])' true
json_is 'len(j["Aliases"])' 1
json_is 'j["Aliases"][0]["AliasName"] + " " + j["Aliases"][0]["TargetKeyId"]' "alias/pgdata $ID"
expect 0 "key list (table)" key list
check "table has a header and two rows" test "$(wc -l < "$T/out")" -eq 3
check "table shows the alias" grep -q "^$ID .*alias/pgdata .*Enabled" "$T/out"

for ref in "$ID" "alias/pgdata" "local:$ID" "local:alias/pgdata"; do
        expect 0 "key describe $ref" key describe "$ref" --json
        json_is 'j["KeyMetadata"]["KeyId"]' "$ID"
done

expect 0 "key disable" --json key disable alias/pgdata
json_is 'j["KeyState"]' Disabled
expect 0 "key describe shows Disabled" key describe alias/pgdata --json
json_is 'j["KeyMetadata"]["Enabled"]' false
expect 0 "key enable" key enable alias/pgdata --json
json_is 'j["KeyState"]' Enabled

expect 0 "key rotate" key rotate alias/pgdata --json
json_is 'j["KeyVersion"]' 2
json_is 'j["KeyId"]' "$ID"
expect 0 "key rotate again (text)" key rotate "$ID"
check "text shows version 3" grep -q '^KeyVersion: *3$' "$T/out"
expect 0 "describe after rotation" key describe alias/pgdata --json
json_is 'j["KeyMetadata"]["KeyVersion"]' 3
json_is 'j["KeyMetadata"]["KeyVersions"]' 3

expect 0 "key schedule-deletion" key schedule-deletion "$ID2" --pending-window-in-days 7 --json
json_is 'j["KeyState"]' PendingDeletion
json_is 'j["PendingWindowInDays"]' 7
DEL=$(json 'j["DeletionDate"]')
now=$(date -u +%s)
check "deletion date is 7 days ahead" python3 -c "
import datetime, sys
d = datetime.datetime.strptime('$DEL', '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc).timestamp()
sys.exit(0 if abs(d - ($now + 7 * 86400)) < 120 else 1)"
expect 0 "describe shows DeletionDate" key describe "$ID2" --json
json_is 'j["KeyMetadata"]["DeletionDate"]' "$DEL"
expect 0 "key cancel-deletion" key cancel-deletion "$ID2" --json
json_is 'j["KeyState"]' Disabled
expect 0 "describe after cancel has no DeletionDate" key describe "$ID2" --json
json_is '"DeletionDate" in j["KeyMetadata"]' false

expect 0 "--quiet prints nothing" --quiet key rotate alias/pgdata
check "stdout empty with --quiet" test ! -s "$T/out"

finish
