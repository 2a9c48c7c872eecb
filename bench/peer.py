"""The pipeline a user would write instead of Tripline, for the catch-up benchmark.

A Pub/Sub API subscriber in plain Python: grpcio with the Pub/Sub API's proto, fastavro
to decode each payload with the schema GetSchema serves, sqlite3 to store the exports,
and the replay id committed with each batch (so a crash loses nothing). It reads
/event/ReportEventStream from EARLIEST until it has stored the event whose replay id is
--until, then prints its figures as one JSON line.

scripts/bench.sh runs it beside Tripline's connector on the same emulated org
(crates/tripline/examples/ingest_bench.rs starts it); bench/python-requirements.txt
pins what it needs.
"""

import argparse
import io
import json
import os
import queue
import resource
import sqlite3
import sys
import tempfile
import time

import fastavro
import grpc
from grpc_tools import protoc

TOPIC = "/event/ReportEventStream"
EXPORTS = {"ReportExported", "ReportExportedAsynchronously", "ReportExportedUsingExcelConnector"}
BATCH = 100  # the most events a stream may have pending


def compile_proto(proto_dir):
    """The Pub/Sub API's Python modules, generated from the repository's proto."""
    out = tempfile.mkdtemp(prefix="peer-proto-")
    source = os.path.join(proto_dir, "eventbus", "v1", "pubsub_api.proto")
    status = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", source])
    if status != 0:
        sys.exit(f"protoc failed on {source}")
    sys.path.insert(0, out)
    from eventbus.v1 import pubsub_api_pb2, pubsub_api_pb2_grpc

    return pubsub_api_pb2, pubsub_api_pb2_grpc


def open_db(path):
    db = sqlite3.connect(path, isolation_level=None)
    # The durability Tripline has: a commit survives a crash of the process.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        """CREATE TABLE IF NOT EXISTS exports (
            event_identifier TEXT PRIMARY KEY, execution_identifier TEXT, event_date INTEGER,
            user_id TEXT, username TEXT, report_id TEXT, report_name TEXT, operation TEXT,
            export_format TEXT, rows INTEGER, source_ip TEXT, session_key TEXT, raw TEXT)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS exports_date ON exports (event_date)")
    db.execute("CREATE INDEX IF NOT EXISTS exports_user ON exports (user_id, event_date)")
    db.execute("CREATE TABLE IF NOT EXISTS checkpoint (topic TEXT PRIMARY KEY, replay_id BLOB)")
    return db


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pubsub", required=True, help="host:port of the Pub/Sub API (plain HTTP/2)")
    parser.add_argument("--token", required=True)
    parser.add_argument("--instance-url", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--until", required=True, help="hex replay id of the last event to read")
    parser.add_argument("--proto", required=True, help="the directory holding eventbus/v1/pubsub_api.proto")
    args = parser.parse_args()

    pb, pb_grpc = compile_proto(args.proto)
    db = open_db(args.db)
    channel = grpc.insecure_channel(args.pubsub, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = pb_grpc.PubSubStub(channel)
    metadata = (("accesstoken", args.token), ("instanceurl", args.instance_url), ("tenantid", args.tenant))
    until = bytes.fromhex(args.until)

    requests = queue.Queue()
    requests.put(pb.FetchRequest(topic_name=TOPIC, replay_preset=pb.ReplayPreset.EARLIEST, num_requested=BATCH))

    def fetch_requests():
        while True:
            request = requests.get()
            if request is None:
                return
            yield request

    schemas = {}
    started = time.monotonic()
    received = stored = 0
    for response in stub.Subscribe(fetch_requests(), metadata=metadata):
        rows = []
        for consumer in response.events:
            event = consumer.event
            schema = schemas.get(event.schema_id)
            if schema is None:
                info = stub.GetSchema(pb.SchemaRequest(schema_id=event.schema_id), metadata=metadata)
                schema = schemas[event.schema_id] = fastavro.parse_schema(json.loads(info.schema_json))
            record = fastavro.schemaless_reader(io.BytesIO(event.payload), schema)
            received += 1
            if record.get("Operation") not in EXPORTS:
                continue
            rows.append(
                (
                    record.get("EventIdentifier"),
                    record.get("ExecutionIdentifier"),
                    record.get("EventDate"),
                    record.get("UserId"),
                    record.get("Username"),
                    record.get("ReportId"),
                    record.get("Name"),
                    record.get("Operation"),
                    record.get("ExportFileFormat"),
                    int(record.get("RowsProcessed") or 0),
                    record.get("SourceIp"),
                    record.get("SessionKey"),
                    json.dumps({k: v for k, v in record.items() if v is not None}),
                )
            )
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO exports VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        db.execute(
            "INSERT INTO checkpoint VALUES (?, ?) ON CONFLICT (topic) DO UPDATE SET replay_id = excluded.replay_id",
            (TOPIC, response.latest_replay_id),
        )
        db.execute("COMMIT")
        stored += len(rows)
        if any(c.replay_id == until for c in response.events) or response.latest_replay_id == until:
            break
        if response.events:
            requests.put(pb.FetchRequest(num_requested=len(response.events)))
    elapsed = time.monotonic() - started
    requests.put(None)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # ru_maxrss carries the parent's peak across fork; the kernel's per-process mark does not.
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "received": received,
                "stored": stored,
                "seconds": elapsed,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )
    channel.close()


if __name__ == "__main__":
    main()
