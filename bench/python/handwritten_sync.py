"""The usual hand-written alternative to sfsync: simple-salesforce + Segment's Python library.

Reads every Contact with the fields of sfsync's `contacts` sync over the REST API and sends
one `identify` per contact to a Segment-compatible endpoint, the way such scripts are
usually written: a client-credentials token, `query_all_iter`, a little flattening, and the
library's own batching (gzip on, like sfsync; a queue large enough that nothing is dropped).

With `--all` (the `python_all` benchmark, issue 16's mixed workload) it goes on with the
other three syncs of bench.py's config, reading the same fields sfsync's syncs select and
sending the calls sfsync sends for them:

- Contact → `identify` as above, but with the traits as sfsync writes them (the contacts-only
  run keeps Salesforce's names, as it always has, so that its figures stay comparable):
  Email, FirstName, LastName, Title and Phone under their Segment names, `name` composed
  of the name parts, `created_at` in epoch seconds;
- Account → `group` (groupId = Id, sfsync's anonymousId `sfsync-object-1-<Id>`, traits
  with Name, Phone and Description renamed as sfsync's object traits are, plus
  `object_type_id`);
- AccountContactRelation → `group` with userId = ContactId and groupId = AccountId, the
  relation's fields in `traits.relationshipAttributes`;
- Task → `track` of "Task Logged" by userId = WhoId at CreatedDate, properties Subject,
  Status, Priority, ActivityDate. A task without a WhoId (on an account only, or on
  nobody) names no person: it is skipped, as sfsync skips it (missing_identifier).

    python handwritten_sync.py [--all] SALESFORCE_URL RECEIVER_URL

Prints one JSON line: calls sent (`records`), records read, records skipped, per object,
and seconds.
"""

import json
import sys
import time
from datetime import datetime

import requests
import segment.analytics as analytics
from simple_salesforce import Salesforce

# The simulator's demo connected app (shared/simulator/src/keys.rs, Credentials::demo()).
CLIENT_ID = "3MVG9sfsyncDemoConsumerKey.simulator"
CLIENT_SECRET = "sfsync-demo-consumer-secret"

FIELDS = [
    "Email", "FirstName", "MiddleName", "LastName", "Suffix", "Title", "Phone",
    "CreatedDate", "MailingAddress", "Account.Name",
]
# The fields of bench.py's accounts, account_contacts and tasks syncs.
ACCOUNT_FIELDS = ["Name", "Industry", "Phone", "Website", "Description"]
RELATION_FIELDS = ["IsDirect", "IsActive", "Roles", "StartDate"]
TASK_FIELDS = ["Subject", "Status", "Priority", "ActivityDate"]
# sfsync's object traits rename these (shared/mapping, OBJECT_RESERVED); the others keep
# their Salesforce names.
OBJECT_TRAIT_NAMES = {"Name": "name", "Phone": "phone", "Description": "description"}
OBJECT_TYPE_ID = "1"
# sfsync's people traits (shared/mapping, PEOPLE_RESERVED: those of FIELDS), and the name
# parts it composes `name` of.
PEOPLE_TRAIT_NAMES = {"Email": "email", "FirstName": "firstName", "LastName": "lastName",
                      "Title": "title", "Phone": "phone"}
NAME_PARTS = ["FirstName", "MiddleName", "LastName", "Suffix"]


class LoopbackSession(requests.Session):
    """The simulator speaks plain HTTP on loopback, and simple-salesforce always builds
    https:// URLs from the instance: the only change to the script the benchmark needs."""

    def request(self, method, url, *args, **kwargs):
        if url.startswith("https://"):
            url = "http://" + url[len("https://"):]
        return super().request(method, url, *args, **kwargs)


def main():
    args = sys.argv[1:]
    everything = "--all" in args
    sf_url, receiver_url = [a for a in args if a != "--all"]
    started = time.monotonic()

    token = requests.post(
        f"{sf_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
        timeout=30,
    )
    token.raise_for_status()
    auth = token.json()
    sf = Salesforce(
        instance_url=auth["instance_url"],
        session_id=auth["access_token"],
        version="62.0",
        session=LoopbackSession(),
    )

    analytics.write_key = "python-write-key"
    analytics.host = receiver_url
    analytics.gzip = True
    analytics.max_queue_size = 10_000_000
    failures = []
    analytics.on_error = lambda error, batch: failures.append(str(error))

    # Per object: [records read, calls sent].
    counts = {"Contact": send_contacts(sf, segment_traits=everything)}
    if everything:
        counts["Account"] = send_accounts(sf)
        counts["AccountContactRelation"] = send_relations(sf)
        counts["Task"] = send_tasks(sf)
    analytics.shutdown()

    print(json.dumps({
        "records": sum(sent for _, sent in counts.values()),
        "read": sum(read for read, _ in counts.values()),
        "skipped": sum(read - sent for read, sent in counts.values()),
        "per_object": {name: {"read": read, "sent": sent, "skipped": read - sent}
                       for name, (read, sent) in counts.items()},
        "seconds": round(time.monotonic() - started, 3),
        "failures": len(failures),
    }))


def soql(obj, fields):
    return f"SELECT Id, SystemModstamp, {', '.join(fields)} FROM {obj} ORDER BY SystemModstamp, Id"


def send_contacts(sf, segment_traits=False):
    sent = 0
    for record in sf.query_all_iter(soql("Contact", FIELDS)):
        record.pop("attributes", None)
        user_id = record.pop("Id")
        account = record.pop("Account", None)
        record["Account.Name"] = account.get("Name") if account else None
        address = record.get("MailingAddress")
        if isinstance(address, dict):
            address.pop("attributes", None)
        timestamp = record.pop("SystemModstamp")
        traits = record
        if segment_traits:
            traits = {PEOPLE_TRAIT_NAMES.get(k, k): v for k, v in record.items()}
            name = " ".join(record[p].strip() for p in NAME_PARTS
                            if record[p] and record[p].strip())
            if name:
                traits["name"] = name
            created = record["CreatedDate"]
            traits["created_at"] = int(parse_time(created).timestamp()) if created else None
        analytics.identify(user_id, traits=traits, timestamp=parse_time(timestamp))
        sent += 1
    return sent, sent


def send_accounts(sf):
    sent = 0
    for record in sf.query_all_iter(soql("Account", ACCOUNT_FIELDS)):
        group_id = record["Id"]
        traits = {OBJECT_TRAIT_NAMES.get(f, f): record[f] for f in ACCOUNT_FIELDS}
        traits["object_type_id"] = OBJECT_TYPE_ID
        analytics.group(
            anonymous_id=f"sfsync-object-{OBJECT_TYPE_ID}-{group_id}",
            group_id=group_id,
            traits=traits,
            timestamp=parse_time(record["SystemModstamp"]),
        )
        sent += 1
    return sent, sent


def send_relations(sf):
    read = sent = 0
    for record in sf.query_all_iter(soql("AccountContactRelation",
                                         ["ContactId", "AccountId"] + RELATION_FIELDS)):
        read += 1
        if not record["ContactId"] or not record["AccountId"]:
            continue
        analytics.group(
            user_id=record["ContactId"],
            group_id=record["AccountId"],
            traits={
                "object_type_id": OBJECT_TYPE_ID,
                "relationshipAttributes": {f: record[f] for f in RELATION_FIELDS},
            },
            timestamp=parse_time(record["SystemModstamp"]),
        )
        sent += 1
    return read, sent


def send_tasks(sf):
    read = sent = 0
    for record in sf.query_all_iter(soql("Task", ["WhoId", "CreatedDate"] + TASK_FIELDS)):
        read += 1
        if not record["WhoId"]:
            continue
        analytics.track(
            user_id=record["WhoId"],
            event="Task Logged",
            properties={f: record[f] for f in TASK_FIELDS},
            timestamp=parse_time(record["CreatedDate"]),
        )
        sent += 1
    return read, sent


def parse_time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


if __name__ == "__main__":
    main()
