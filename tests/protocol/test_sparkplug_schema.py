"""The Sparkplug B schema: ``sparkplug_b.proto`` has the specification's field numbers, and
the committed ``sparkplug_b_pb2`` module is what protoc makes of it.

The tables below are written from the Sparkplug 3.0 specification, 6_Payloads ("Google
Protocol Buffer Schema", "Data Types"), and checked against the generated module's
descriptors. When a protoc is at hand (``grpc_tools`` in the venv, or ``protoc`` on PATH),
the .proto is compiled afresh: its descriptor must equal the committed module's, and the
generated Python must equal the committed file but for protoc's version stamp (the
``.pyi`` too, when the protoc is the one that made the committed files). Without a protoc
those tests skip.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from agent.protocol.sparkplug import DataType, sparkplug_b_pb2

pytestmark = pytest.mark.timeout(60)

PACKAGE = Path(__file__).resolve().parents[2] / "agent" / "protocol" / "sparkplug"
PROTO = PACKAGE / "sparkplug_b.proto"

# message -> field -> (number, type, repeated); the spec's numbers, by hand
SPEC: dict[str, dict[str, tuple[int, str, bool]]] = {
    "Payload": {"timestamp": (1, "uint64", False), "metrics": (2, "Metric", True),
                "seq": (3, "uint64", False), "uuid": (4, "string", False),
                "body": (5, "bytes", False)},
    "Metric": {"name": (1, "string", False), "alias": (2, "uint64", False),
               "timestamp": (3, "uint64", False), "datatype": (4, "uint32", False),
               "is_historical": (5, "bool", False), "is_transient": (6, "bool", False),
               "is_null": (7, "bool", False), "metadata": (8, "MetaData", False),
               "properties": (9, "PropertySet", False), "int_value": (10, "uint32", False),
               "long_value": (11, "uint64", False), "float_value": (12, "float", False),
               "double_value": (13, "double", False), "boolean_value": (14, "bool", False),
               "string_value": (15, "string", False), "bytes_value": (16, "bytes", False),
               "dataset_value": (17, "DataSet", False),
               "template_value": (18, "Template", False),
               "extension_value": (19, "MetricValueExtension", False)},
    "PropertySet": {"keys": (1, "string", True), "values": (2, "PropertyValue", True)},
    "PropertySetList": {"propertyset": (1, "PropertySet", True)},
    "PropertyValue": {"type": (1, "uint32", False), "is_null": (2, "bool", False),
                      "int_value": (3, "uint32", False), "long_value": (4, "uint64", False),
                      "float_value": (5, "float", False), "double_value": (6, "double", False),
                      "boolean_value": (7, "bool", False),
                      "string_value": (8, "string", False),
                      "propertyset_value": (9, "PropertySet", False),
                      "propertysets_value": (10, "PropertySetList", False),
                      "extension_value": (11, "PropertyValueExtension", False)},
    "MetaData": {"is_multi_part": (1, "bool", False), "content_type": (2, "string", False),
                 "size": (3, "uint64", False), "seq": (4, "uint64", False),
                 "file_name": (5, "string", False), "file_type": (6, "string", False),
                 "md5": (7, "string", False), "description": (8, "string", False)},
    "DataSet": {"num_of_columns": (1, "uint64", False), "columns": (2, "string", True),
                "types": (3, "uint32", True), "rows": (4, "Row", True)},
    "DataSetValue": {"int_value": (1, "uint32", False), "long_value": (2, "uint64", False),
                     "float_value": (3, "float", False), "double_value": (4, "double", False),
                     "boolean_value": (5, "bool", False), "string_value": (6, "string", False),
                     "extension_value": (7, "DataSetValueExtension", False)},
    "Row": {"elements": (1, "DataSetValue", True)},
    "Template": {"version": (1, "string", False), "metrics": (2, "Metric", True),
                 "parameters": (3, "Parameter", True), "template_ref": (4, "string", False),
                 "is_definition": (5, "bool", False)},
    "Parameter": {"name": (1, "string", False), "type": (2, "uint32", False),
                  "int_value": (3, "uint32", False), "long_value": (4, "uint64", False),
                  "float_value": (5, "float", False), "double_value": (6, "double", False),
                  "boolean_value": (7, "bool", False), "string_value": (8, "string", False),
                  "extension_value": (9, "ParameterValueExtension", False)},
}
# message -> the fields of its "value" oneof
ONEOF = {"Metric": range(10, 20), "PropertyValue": range(3, 12), "DataSetValue": range(1, 8),
         "Parameter": range(3, 10)}
# message -> first extension number ("extensions N to max")
EXTENSIONS = {"Payload": 6, "PropertySet": 3, "PropertySetList": 2, "MetaData": 9,
              "DataSet": 5, "Row": 2, "Template": 6}
# 6_Payloads "Data Types"
SPEC_DATATYPES = [
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float", "Double", "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes",
    "File", "Template", "PropertySet", "PropertySetList", "Int8Array", "Int16Array",
    "Int32Array", "Int64Array", "UInt8Array", "UInt16Array", "UInt32Array", "UInt64Array",
    "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
]
_TYPES = {FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_UINT64: "uint64",
          FieldDescriptor.TYPE_FLOAT: "float", FieldDescriptor.TYPE_DOUBLE: "double",
          FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_STRING: "string",
          FieldDescriptor.TYPE_BYTES: "bytes"}


def _messages(desc: Descriptor) -> dict[str, Descriptor]:
    found = {desc.name: desc}
    for nested in desc.nested_types:
        found.update(_messages(nested))
    return found


MESSAGES = _messages(sparkplug_b_pb2.Payload.DESCRIPTOR)


def _shape(field: FieldDescriptor) -> tuple[int, str, bool]:
    kind = field.message_type.name if field.message_type is not None else _TYPES[field.type]
    return field.number, kind, field.is_repeated


@pytest.mark.parametrize("message", sorted(SPEC))
def test_every_field_has_the_specs_number_and_type(message: str) -> None:
    desc = MESSAGES[message]
    assert {f.name: _shape(f) for f in desc.fields} == SPEC[message]
    assert all(not f.is_required for f in desc.fields)  # proto2, every field optional


@pytest.mark.parametrize("message", sorted(ONEOF))
def test_the_value_is_a_oneof(message: str) -> None:
    (oneof,) = MESSAGES[message].oneofs
    assert oneof.name == "value"
    assert sorted(f.number for f in oneof.fields) == list(ONEOF[message])


@pytest.mark.parametrize("message", sorted(EXTENSIONS))
def test_extension_ranges(message: str) -> None:
    proto = descriptor_pb2.DescriptorProto()
    MESSAGES[message].CopyToProto(proto)
    assert [(r.start, r.end) for r in proto.extension_range] == [
        (EXTENSIONS[message], 2**29)]  # "to max": exclusive end 2**29


def test_data_type_numbers_are_the_specs() -> None:
    enum = sparkplug_b_pb2.DESCRIPTOR.enum_types_by_name["DataType"]
    assert [(v.name, v.number) for v in enum.values] == list(
        zip(SPEC_DATATYPES, range(35), strict=True))
    assert [(d.name, d.value) for d in DataType] == [(v.name, v.number) for v in enum.values]


# --- the committed module is what protoc makes of the .proto ------------------------------

def _protoc() -> list[str] | None:
    if importlib.util.find_spec("grpc_tools") is not None:  # pip install grpcio-tools
        return [sys.executable, "-m", "grpc_tools.protoc"]
    found = shutil.which("protoc")
    return [found] if found else None


def _compile(tmp_path: Path, *outputs: str) -> list[str]:
    protoc = _protoc()
    if protoc is None:
        pytest.skip("no protoc (pip install grpcio-tools, or apt-get install protobuf-compiler)")
    args = [*protoc, f"-I{PACKAGE}", *outputs, str(PROTO)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    return protoc


def _without_json_names(file: descriptor_pb2.FileDescriptorProto) -> bytes:
    def strip(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            field.ClearField("json_name")
        for nested in message.nested_type:
            strip(nested)

    for message in file.message_type:
        strip(message)
    serialized: bytes = file.SerializeToString(deterministic=True)
    return serialized


def test_the_proto_compiles_to_the_committed_descriptor(tmp_path: Path) -> None:
    _compile(tmp_path, f"--descriptor_set_out={tmp_path / 'set.pb'}")
    fresh = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "set.pb").read_bytes())
    committed = descriptor_pb2.FileDescriptorProto.FromString(
        sparkplug_b_pb2.DESCRIPTOR.serialized_pb)
    assert _without_json_names(fresh.file[0]) == _without_json_names(committed)


_STAMP = re.compile(r"# Protobuf Python Version: \S+\n|ValidateProtobufRuntimeVersion\([^)]*\)")


def _version(text: str) -> str | None:
    found = re.search(r"# Protobuf Python Version: (\S+)", text)
    return found.group(1) if found else None


def test_the_committed_module_is_protocs_output(tmp_path: Path) -> None:
    _compile(tmp_path, f"--python_out={tmp_path}", f"--pyi_out={tmp_path}")
    fresh = (tmp_path / "sparkplug_b_pb2.py").read_text()
    committed = (PACKAGE / "sparkplug_b_pb2.py").read_text()
    if _version(fresh) is None:
        pytest.skip("this protoc predates the Python runtime version check (protobuf < 5)")
    assert _STAMP.sub("", fresh) == _STAMP.sub("", committed)
    if _version(fresh) == _version(committed):  # stubs differ between protoc versions
        assert (tmp_path / "sparkplug_b_pb2.pyi").read_text() == (
            PACKAGE / "sparkplug_b_pb2.pyi").read_text()


def test_the_committed_module_is_not_newer_than_the_oldest_runtime_allowed() -> None:
    """The fleet extra allows protobuf >= 6.33: gencode newer than that runtime would fail
    protobuf's own version check at import."""
    version = _version((PACKAGE / "sparkplug_b_pb2.py").read_text())
    assert version is not None
    assert tuple(int(p) for p in version.split(".")) <= (6, 33, 0)
    pyproject = (PACKAGE.parents[2] / "pyproject.toml").read_text()
    assert '"protobuf>=6.33,<8"' in pyproject
