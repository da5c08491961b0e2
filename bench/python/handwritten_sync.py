"""The usual hand-written alternative to sfsync: simple-salesforce + Segment's Python library.

Reads every Contact with the fields of sfsync's `contacts` sync over the REST API and sends
one `identify` per contact to a Segment-compatible endpoint, the way such scripts are
usually written: a client-credentials token, `query_all_iter`, a little flattening, and the
library's own batching (gzip on, like sfsync; a queue large enough that nothing is dropped).

    python handwritten_sync.py SALESFORCE_URL RECEIVER_URL

Prints one JSON line: records sent and seconds.
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


class LoopbackSession(requests.Session):
    """The simulator speaks plain HTTP on loopback, and simple-salesforce always builds
    https:// URLs from the instance: the only change to the script the benchmark needs."""

    def request(self, method, url, *args, **kwargs):
        if url.startswith("https://"):
            url = "http://" + url[len("https://"):]
        return super().request(method, url, *args, **kwargs)


def main():
    sf_url, receiver_url = sys.argv[1], sys.argv[2]
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

    soql = f"SELECT Id, SystemModstamp, {', '.join(FIELDS)} FROM Contact ORDER BY SystemModstamp, Id"
    sent = 0
    for record in sf.query_all_iter(soql):
        record.pop("attributes", None)
        user_id = record.pop("Id")
        account = record.pop("Account", None)
        record["Account.Name"] = account.get("Name") if account else None
        address = record.get("MailingAddress")
        if isinstance(address, dict):
            address.pop("attributes", None)
        timestamp = record.pop("SystemModstamp")
        analytics.identify(user_id, traits=record, timestamp=parse_time(timestamp))
        sent += 1
    analytics.shutdown()

    print(json.dumps({
        "records": sent,
        "seconds": round(time.monotonic() - started, 3),
        "failures": len(failures),
    }))


def parse_time(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


if __name__ == "__main__":
    main()
