"""A customers.v1 client in Python: proof that the published protos work
outside Rust.

Generates stubs from ../../proto with grpcio-tools into a temporary
folder, then against a running server (argument: host:port, default
127.0.0.1:50051): creates a customer, imports a small CSV through the
ImportCustomers client stream, and resolves a ticket's requester. Prints
one JSON line per step and exits non-zero on any surprise.

    pip install grpcio==1.85.3 grpcio-tools==1.85.1
    python examples/python/client.py 127.0.0.1:50051 [token]
"""

import importlib
import json
import os
import sys
import tempfile
import uuid

import grpc
from grpc_tools import protoc

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def generate_stubs(out_dir):
    protos = [
        os.path.join("customers", "v1", name)
        for name in sorted(os.listdir(os.path.join(PROTO_ROOT, "customers", "v1")))
        if name.endswith(".proto")
    ]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + protos) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out_dir)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    token = sys.argv[2] if len(sys.argv) > 2 else None
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with tempfile.TemporaryDirectory() as out_dir:
        generate_stubs(out_dir)
        pb = importlib.import_module("customers.v1.customer_service_pb2")
        customer_pb = importlib.import_module("customers.v1.customer_pb2")
        svc = importlib.import_module("customers.v1.customer_service_pb2_grpc")
        intake_pb = importlib.import_module("customers.v1.ticket_intake_service_pb2")
        intake_svc = importlib.import_module("customers.v1.ticket_intake_service_pb2_grpc")

        run = uuid.uuid4().hex[:8]
        with grpc.insecure_channel(target) as channel:
            customers = svc.CustomerServiceStub(channel)
            created = customers.CreateCustomer(
                pb.CreateCustomerRequest(
                    customer=customer_pb.Customer(
                        name="Ada Python",
                        email=f"ada.{run}@example.com",
                        mobile="07911 123456",
                        attributes={"organization": "Snake Oil Ltd"},
                    )
                ),
                metadata=metadata,
            )
            assert created.mobile == "+447911123456", created
            print(json.dumps({"step": "create", "id": created.id, "initials": created.initials}))

            csv = (
                "name,email,mobile,role\n"
                f"Grace Python,grace.{run}@example.com,,Engineer\n"
                f"\"Hopper, Grace\",GRACE.{run}@example.com,,Admiral\n"
                "Broken,not-an-email,,\n"
            ).encode()

            def requests():
                yield pb.ImportCustomersRequest(options=pb.ImportOptions(mode=pb.ImportOptions.UPSERT))
                for i in range(0, len(csv), 7):  # small pieces, split anywhere
                    yield pb.ImportCustomersRequest(csv_chunk=csv[i : i + 7])

            report = customers.ImportCustomers(requests(), metadata=metadata)
            assert (report.created, report.updated, report.failed) == (1, 1, 1), report
            assert report.errors[0].row_number == 3 and report.errors[0].reason == "INVALID_EMAIL", report
            print(json.dumps({"step": "import", "created": report.created, "updated": report.updated,
                              "failed": report.failed, "import_id": report.import_id}))

            intake = intake_svc.TicketIntakeServiceStub(channel)
            resolved = intake.ResolveTicketCustomer(
                intake_pb.ResolveTicketCustomerRequest(
                    ticket_id=f"py-{run}", name="Ada", email=f"ADA.{run}@example.com"
                ),
                metadata=metadata,
            )
            assert resolved.customer.id == created.id and not resolved.created, resolved
            print(json.dumps({"step": "intake", "customer_id": resolved.customer.id, "created": resolved.created}))


if __name__ == "__main__":
    main()
