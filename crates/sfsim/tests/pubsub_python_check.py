"""An independent Pub/Sub client: Python's grpcio with stubs generated from our proto by
grpcio-tools, and Apache Avro's Python library decoding with the schema GetSchema
serves. Subscribes over TLS, as Salesforce's own Python examples do."""
import io
import os
import sys
import tempfile

from grpc_tools import protoc

proto_root = os.environ["PROTO_ROOT"]
out = tempfile.mkdtemp()
status = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}",
                      "eventbus/v1/pubsub_api.proto"])
assert status == 0, "the proto compiles"
sys.path.insert(0, out)

import avro.io  # noqa: E402
import avro.schema  # noqa: E402
import grpc  # noqa: E402
from eventbus.v1 import pubsub_api_pb2 as pb2  # noqa: E402
from eventbus.v1 import pubsub_api_pb2_grpc as pb2_grpc  # noqa: E402

with open(os.environ["SFSIM_CA"], "rb") as f:
    credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
channel = grpc.secure_channel(os.environ["PUBSUB_TARGET"], credentials)
stub = pb2_grpc.PubSubStub(channel)
metadata = (("accesstoken", os.environ["SFSIM_TOKEN"]), ("instanceurl", os.environ["SFSIM_URL"]),
            ("tenantid", os.environ["SFSIM_ORG"]))

topic = stub.GetTopic(pb2.TopicRequest(topic_name="/event/ReportEventStream"), metadata=metadata)
schema = avro.schema.parse(stub.GetSchema(pb2.SchemaRequest(schema_id=topic.schema_id), metadata=metadata).schema_json)

def requests():
    yield pb2.FetchRequest(topic_name="/event/ReportEventStream", replay_preset=pb2.ReplayPreset.EARLIEST, num_requested=3)

expected = int(os.environ["EXPECTED"])
seen = []
for response in stub.Subscribe(requests(), metadata=metadata):
    for event in response.events:
        record = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(event.event.payload)))
        seen.append(record)
    if len(seen) >= expected:
        break
assert len(seen) == expected, len(seen)
assert all(r["Operation"] == "ReportExported" for r in seen), seen
assert [r["Sequence"] for r in seen] == list(range(1, expected + 1)), [r["Sequence"] for r in seen]
assert len({r["ExecutionIdentifier"] for r in seen}) == 1
assert all(r["RowsProcessed"] == float(os.environ["ROWS"]) for r in seen)

try:
    stub.GetTopic(pb2.TopicRequest(topic_name="/event/ReportEventStream"),
                  metadata=(("accesstoken", "bogus"), metadata[1], metadata[2]))
    sys.exit("a bogus token was accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
    codes = dict(e.trailing_metadata() or ())
    assert codes.get("error-code") == "sfdc.platform.eventbus.grpc.service.auth.error", codes
print("ok")
