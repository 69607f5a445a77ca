"""The committed gRPC stubs are exactly what scripts/generate_proto.py makes of the .proto now.

After editing proto/taskqueue/v1/taskqueue.proto, run `python scripts/generate_proto.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "broker" / "tq_broker" / "rpc"
GENERATED = (
    "taskqueue_pb2.py",
    "taskqueue_pb2.pyi",
    "taskqueue_pb2_grpc.py",
    "taskqueue_pb2_grpc.pyi",
)


def test_committed_stubs_match_a_fresh_generation_byte_for_byte(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_proto.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(GENERATED)
    stale = [
        name
        for name in GENERATED
        if (tmp_path / name).read_bytes() != (COMMITTED / name).read_bytes()
    ]
    assert not stale, f"stale stubs {stale}: run `python scripts/generate_proto.py`"


def test_stubs_import_from_the_package_and_describe_the_rpcs() -> None:
    from tq_broker.rpc import taskqueue_pb2, taskqueue_pb2_grpc

    service = taskqueue_pb2.DESCRIPTOR.services_by_name["TaskQueue"]
    assert service.full_name == "taskqueue.v1.TaskQueue"
    assert [m.name for m in service.methods] == [
        "SubmitTask",
        "GetTaskStatus",
        "CancelTask",
        "ListTasks",
        "StreamTaskUpdates",
        "GetStats",
        "AbortTask",
    ]
    assert hasattr(taskqueue_pb2_grpc, "add_TaskQueueServicer_to_server")
