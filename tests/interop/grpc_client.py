"""Calls the demo's user service with Python's grpcio, an implementation of
gRPC this project did not write, from stubs generated from the shipped
`demo-services/proto/user.proto` by grpcio-tools: the proof that "any
client generated from the proto works". Also the standard health service
and server reflection, which generic tools rely on.

Run by tests/grpc_interop.rs against a real user service:

    python grpc_client.py --target 127.0.0.1:PORT --proto PATH/user.proto \
        --token TOKEN --read-only-token TOKEN

Exits 0 when every check passed; otherwise prints what failed and exits 1.
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc

FAILURES = []


def check(name, condition, detail=""):
    if condition:
        print(f"ok   {name}")
    else:
        print(f"FAIL {name} {detail}")
        FAILURES.append(name)


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def stubs(proto):
    """Generates user_pb2 and user_pb2_grpc from the proto, as a user would."""
    out = tempfile.mkdtemp(prefix="user-proto-")
    include = os.path.dirname(os.path.abspath(proto))
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            os.path.basename(proto),
        ]
    )
    if status != 0:
        sys.exit(f"protoc failed on {proto}")
    sys.path.insert(0, out)
    return importlib.import_module("user_pb2"), importlib.import_module("user_pb2_grpc")


def main():
    args = argparse.ArgumentParser()
    args.add_argument("--target", required=True)
    args.add_argument("--proto", required=True)
    args.add_argument("--token", required=True, help="read:users and write:users")
    args.add_argument("--read-only-token", required=True, help="read:users only")
    opts = args.parse_args()

    pb, pb_grpc = stubs(opts.proto)
    channel = grpc.insecure_channel(opts.target)
    users = pb_grpc.UserServiceStub(channel)
    auth = [("authorization", f"Bearer {opts.token}")]
    read_only = [("authorization", f"Bearer {opts.read_only_token}")]

    # GetUser: a seeded user, then the statuses of the contract.
    user = users.GetUser(pb.GetUserRequest(id=1), metadata=auth, timeout=10)
    check("GetUser returns user 1", user.id == 1 and user.name and "@" in user.email, str(user))
    check("GetUser has created_at", bool(user.created_at), str(user))
    code, _ = code_of(lambda: users.GetUser(pb.GetUserRequest(id=999999), metadata=auth, timeout=10))
    check("GetUser unknown id is NOT_FOUND", code == grpc.StatusCode.NOT_FOUND, str(code))
    code, details = code_of(lambda: users.GetUser(pb.GetUserRequest(id=0), metadata=auth, timeout=10))
    check("GetUser id 0 is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT and details, str(code))
    code, _ = code_of(lambda: users.GetUser(pb.GetUserRequest(id=1), timeout=10))
    check("GetUser without a token is UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED, str(code))
    forged = [("authorization", "Bearer " + opts.token[:-4] + "AAAA")]
    code, _ = code_of(lambda: users.GetUser(pb.GetUserRequest(id=1), metadata=forged, timeout=10))
    check("GetUser with a forged token is UNAUTHENTICATED", code == grpc.StatusCode.UNAUTHENTICATED, str(code))

    # ListUsers: a server stream, one page.
    listed = list(users.ListUsers(pb.ListUsersRequest(page=1, page_size=2), metadata=auth, timeout=10))
    check("ListUsers streams a page of 2", len(listed) == 2 and listed[0].id < listed[1].id, str(listed))
    everyone = list(users.ListUsers(pb.ListUsersRequest(), metadata=auth, timeout=10))
    check("ListUsers with defaults streams every seeded user", len(everyone) >= 3, str(len(everyone)))
    code, _ = code_of(lambda: list(users.ListUsers(pb.ListUsersRequest(page_size=101), metadata=auth, timeout=10)))
    check("ListUsers page_size 101 is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, str(code))

    # UpdateUser: write permission, empty fields kept, statuses.
    updated = users.UpdateUser(pb.UpdateUserRequest(id=2, name="Python Caller"), metadata=auth, timeout=10)
    check("UpdateUser changes the name", updated.name == "Python Caller", str(updated))
    check("UpdateUser with an empty email keeps it", updated.email and "@" in updated.email, str(updated))
    code, _ = code_of(lambda: users.UpdateUser(pb.UpdateUserRequest(id=2, email="nope"), metadata=auth, timeout=10))
    check("UpdateUser malformed email is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, str(code))
    code, _ = code_of(
        lambda: users.UpdateUser(pb.UpdateUserRequest(id=2, email=user.email), metadata=auth, timeout=10)
    )
    check("UpdateUser to a taken email is ALREADY_EXISTS", code == grpc.StatusCode.ALREADY_EXISTS, str(code))
    code, _ = code_of(lambda: users.UpdateUser(pb.UpdateUserRequest(id=2, name="x"), metadata=read_only, timeout=10))
    check("UpdateUser with read:users only is PERMISSION_DENIED", code == grpc.StatusCode.PERMISSION_DENIED, str(code))

    # A method the service does not have.
    unknown = channel.unary_unary("/user.UserService/DeleteUser")
    code, _ = code_of(lambda: unknown(b"", metadata=auth, timeout=10))
    check("an unknown method is UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED, str(code))

    # Health, without a token.
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="user.UserService"), timeout=10)
    check("health reports user.UserService SERVING", answer.status == health_pb2.HealthCheckResponse.SERVING, str(answer))

    # Reflection, without a token: the services, then the file of UserService.
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="user.UserService"),
    ]
    answers = list(reflection.ServerReflectionInfo(iter(requests), timeout=10))
    names = [s.name for s in answers[0].list_services_response.service]
    check("reflection lists user.UserService", "user.UserService" in names, str(names))
    files = answers[1].file_descriptor_response.file_descriptor_proto
    check("reflection serves the proto of UserService", len(files) >= 1, str(answers[1]))

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
