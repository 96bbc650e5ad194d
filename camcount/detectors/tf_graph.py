"""A minimal reader of TensorFlow's frozen ``GraphDef`` protobuf files.

Converting the one frozen graph we ship a port of must not pull TensorFlow,
tensorboard or even the protobuf runtime, so the few messages involved
(GraphDef, NodeDef, AttrValue, TensorProto, TensorShapeProto) are decoded
here straight from the wire format. Unknown fields are skipped, as protobuf
itself does, so newer graph versions still parse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from camcount.errors import DetectorError

# Wire types of the protobuf encoding.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

_DT_STRING = 7
# tensorflow/core/framework/types.proto: DataType -> numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
}

Scalar: TypeAlias = str | int | float | bool | None
AttrValue: TypeAlias = Scalar | tuple[int, ...] | np.ndarray | list["AttrValue"]


@dataclass(slots=True)
class TFNode:
    """One NodeDef: enough to walk the graph and read its constants."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, AttrValue] = field(default_factory=dict)


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DetectorError("truncated protobuf: varint runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value); LEN values stay zero-copy views."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise DetectorError("truncated protobuf: field runs past the end")
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _I64:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == _I32:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise DetectorError(f"unsupported protobuf wire type {wire} (field {number})")
        yield number, wire, value


def _signed(value: int) -> int:
    """int64 fields are two's complement in a 64-bit varint."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_ints(value: int | memoryview) -> list[int]:
    """Repeated scalars may arrive one by one or packed; accept both."""
    if isinstance(value, int):
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _packed_floats(value: int | memoryview, fmt: str) -> list[float]:
    if isinstance(value, int):
        raise DetectorError("float field encoded as a varint")
    return list(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))


def parse_shape(buf: memoryview) -> tuple[int, ...]:
    """TensorShapeProto -> dims; an unknown size stays -1."""
    dims = []
    for number, _, value in _fields(buf):
        if number == 2 and isinstance(value, memoryview):
            size = 0
            for n, _, v in _fields(value):
                if n == 1 and isinstance(v, int):
                    size = _signed(v)
            dims.append(size)
    return tuple(dims)


def parse_tensor(buf: memoryview) -> npt.NDArray[np.generic]:
    """TensorProto -> ndarray, honouring TF's "one value fills the shape" shortcut."""
    dtype_id, content = 0, None
    shape: tuple[int, ...] = ()
    values: list[float] = []
    strings: list[bytes] = []
    for number, _, value in _fields(buf):
        if number == 1 and isinstance(value, int):
            dtype_id = value
        elif number == 2 and isinstance(value, memoryview):
            shape = parse_shape(value)
        elif number == 4 and isinstance(value, memoryview):
            content = bytes(value)
        elif number == 5:  # float_val
            values += _packed_floats(value, "f")
        elif number == 8 and isinstance(value, memoryview):  # string_val
            strings.append(bytes(value))
        elif number == 6:  # double_val
            values += _packed_floats(value, "d")
        elif number in (7, 10, 11):  # int_val, int64_val, bool_val
            values += _packed_ints(value)
    if dtype_id == _DT_STRING:  # assertion messages and the like
        return np.array(strings, dtype=object).reshape(shape if strings else (0,))
    dtype = _DTYPES.get(dtype_id)
    if dtype is None:
        raise DetectorError(f"unsupported TensorFlow dtype {dtype_id}")
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    if not values:
        return np.zeros(shape, dtype=dtype)
    array = np.asarray(values, dtype=dtype)
    if array.size == count:
        return array.reshape(shape)
    # TF stores a constant fill as its single value; repeat the last one.
    return np.concatenate([array, np.full(count - array.size, array[-1], dtype)]).reshape(shape)


def _parse_list(buf: memoryview) -> list[AttrValue]:
    out: list[AttrValue] = []
    for number, _, value in _fields(buf):
        if number == 2 and isinstance(value, memoryview):
            out.append(bytes(value).decode("utf-8", "replace"))
        elif number in (3, 6):
            out += _packed_ints(value)
        elif number == 4:
            out += _packed_floats(value, "f")
        elif number == 5:
            out += [bool(v) for v in _packed_ints(value)]
        elif number == 7 and isinstance(value, memoryview):
            out.append(parse_shape(value))
        elif number == 8 and isinstance(value, memoryview):
            out.append(parse_tensor(value))
    return out


def _parse_attr(buf: memoryview) -> AttrValue:
    for number, _, value in _fields(buf):
        if isinstance(value, int):
            if number in (3, 6):  # i, type
                return _signed(value)
            if number == 5:
                return bool(value)
        elif number == 1:
            return _parse_list(value)
        elif number in (2, 9):  # s, placeholder
            return bytes(value).decode("utf-8", "replace")
        elif number == 4:
            return float(struct.unpack("<f", value)[0])
        elif number == 7:
            return parse_shape(value)
        elif number == 8:
            return parse_tensor(value)
    return None


def _parse_node(buf: memoryview) -> TFNode:
    node = TFNode(name="", op="")
    for number, _, value in _fields(buf):
        if not isinstance(value, memoryview):
            continue
        if number == 1:
            node.name = bytes(value).decode()
        elif number == 2:
            node.op = bytes(value).decode()
        elif number == 3:
            node.inputs.append(bytes(value).decode())
        elif number == 5:  # map<string, AttrValue> entry: key 1, value 2
            key, attr = "", None
            for n, _, v in _fields(value):
                if n == 1 and isinstance(v, memoryview):
                    key = bytes(v).decode()
                elif n == 2 and isinstance(v, memoryview):
                    attr = _parse_attr(v)
            node.attrs[key] = attr
    return node


def parse_graph_def(data: bytes) -> list[TFNode]:
    """Every NodeDef of a serialized GraphDef, in file order."""
    try:
        return [
            _parse_node(value)
            for number, _, value in _fields(memoryview(data))
            if number == 1 and isinstance(value, memoryview)
        ]
    except (ValueError, struct.error, UnicodeDecodeError) as exc:  # sizes that do not add up
        raise DetectorError(f"not a valid GraphDef: {exc}") from exc


def const_tensors(nodes: list[TFNode]) -> dict[str, npt.NDArray[np.generic]]:
    """The value of every ``Const`` node, by node name."""
    out: dict[str, npt.NDArray[np.generic]] = {}
    for node in nodes:
        if node.op == "Const":
            value = node.attrs.get("value")
            if not isinstance(value, np.ndarray):
                raise DetectorError(f"Const node {node.name!r} holds no tensor")
            out[node.name] = value
    return out
