"""The sandbox's wire format (``autograder/harness/wire.py``) carries data and nothing else.

What this proves: every supported value (None, bool, int, float with nan/inf, str, lists, tuples,
dicts, dense tensors of each allowed dtype, empty, 0-d and non-contiguous ones) survives an
encode/decode round trip bit for bit; anything outside the format is refused with a one-line
:class:`WireError` on both sides (unsupported objects, reserved keys, too deep nesting, truncated or
garbled bytes, wrong blob sizes, bad tensor descriptions); framing over a real socket pair delivers
messages whole, refuses a frame over the limit before reading it, and reports EOF as ``EOFError``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import threading

import pytest
import torch

from autograder.harness import wire
from autograder.harness.wire import WireError, decode, encode

HEADER = struct.Struct(">Q")


def raw_message(doc: object | bytes, sizes: object | bytes = (), blobs: bytes = b"") -> bytes:
    """A message built by hand: JSON head (blob sizes), JSON document, blobs (as ``encode`` lays them out)."""
    head = sizes if isinstance(sizes, bytes) else json.dumps(list(sizes)).encode()
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return HEADER.pack(len(head)) + head + HEADER.pack(len(body)) + body + blobs


def same(a: object, b: object) -> bool:
    """Structural equality where tensors compare by dtype, shape and bits and nan equals nan."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(
                a.reshape(-1).view(torch.uint8) if a.numel() else a, b.reshape(-1).view(torch.uint8) if b.numel() else b
            )
        )
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def one_line_wire_error(excinfo: pytest.ExceptionInfo) -> str:
    text = str(excinfo.value)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"
    return text


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        1e-310,
        "",
        "héllo \u2603",
        "lone \ud800 surrogate",
        [],
        {},
        [1, [2, [3, []]]],
        {"a": {"b": [None]}},
    ],
)
def test_plain_values_round_trip(value):
    assert same(value, decode(encode(value)))


def test_bool_stays_bool_and_int_stays_int():
    back = decode(encode([True, 1, False, 0]))
    assert [type(x) for x in back] == [bool, int, bool, int]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_round_trip(value):
    back = decode(encode({"x": [value, 2.0]}))
    assert same({"x": [value, 2.0]}, back)


def test_non_finite_floats_are_sent_as_tagged_objects_not_bare_literals():
    data = encode([math.nan, math.inf])
    assert b"NaN" not in data and b"Infinity" not in data
    assert b'"__float__"' in data


def test_tuples_arrive_as_lists():
    assert decode(encode((1, (2, 3)))) == [1, [2, 3]]


def test_dict_order_is_kept():
    value = {"z": 1, "a": 2, "m": 3}
    assert list(decode(encode(value))) == ["z", "a", "m"]


@pytest.mark.parametrize("dtype", list(wire.DTYPES.values()), ids=list(wire.DTYPES))
def test_tensors_of_every_dtype_round_trip_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(1)
    if dtype == torch.bool:
        t = torch.rand(3, 5, generator=gen) > 0.5
    elif dtype.is_floating_point:
        t = (torch.randn(3, 5, generator=gen) * 100).to(dtype)
    else:
        t = torch.randint(-(2**30), 2**30, (3, 5), generator=gen).to(dtype)
    back = decode(encode(t))
    assert same(t, back)


def test_float_tensor_keeps_nan_inf_and_negative_zero_bits():
    t = torch.tensor([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-45])
    back = decode(encode(t))
    assert torch.equal(back.view(torch.int32), t.view(torch.int32))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (2, 0, 4), ()])
def test_empty_and_zero_dim_tensors_round_trip(shape):
    t = torch.zeros(shape) if shape else torch.tensor(2.5)
    back = decode(encode(t))
    assert back.shape == t.shape and back.dtype == t.dtype
    assert torch.equal(back, t)


def test_zero_dim_integer_tensor_round_trips():
    back = decode(encode(torch.tensor(-3, dtype=torch.int64)))
    assert back.dim() == 0 and back.item() == -3 and back.dtype == torch.int64


@pytest.mark.parametrize("view", ["transpose", "stride", "expand", "offset", "imag_of_conj"])
def test_non_contiguous_views_arrive_as_their_values(view):
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    t = {
        "transpose": lambda: base.t(),
        "stride": lambda: base[::2, 1::3],
        "expand": lambda: base[:1].expand(4, 8),
        "offset": lambda: base[3:, 5:],
        "imag_of_conj": lambda: torch.complex(base, -base).conj().imag,
    }[view]()
    back = decode(encode(t))
    assert back.is_contiguous()
    assert torch.equal(back, t.clone())


def test_contiguous_tensor_with_negative_bit_round_trips():
    t = torch.tensor([1 + 2j]).conj().imag  # a public-API view: contiguous, negative bit set
    assert t.is_neg() and t.is_contiguous()
    assert torch.equal(decode(encode(t)), torch.tensor([-2.0]))


def test_tensor_with_autograd_history_arrives_as_a_plain_leaf():
    x = torch.randn(3, requires_grad=True)
    back = decode(encode(x * 2))
    assert not back.requires_grad and back.grad_fn is None
    assert torch.equal(back, (x * 2).detach())


def test_decoded_tensor_owns_its_memory():
    """The tensor is rebuilt on a private copy: changing it changes nothing in the message bytes."""
    data = encode(torch.ones(4))
    t = decode(data)
    t += 1
    assert torch.equal(decode(data), torch.ones(4))


def test_two_tensors_naming_one_blob_are_independent_copies():
    blob = torch.ones(2).numpy().tobytes()
    desc = {"__tensor__": 0, "dtype": "float32", "shape": [2]}
    a, b = decode(raw_message([desc, desc], [len(blob)], blob))
    a += 5
    assert torch.equal(b, torch.ones(2))


def test_sparse_tensor_arrives_dense():
    t = torch.eye(3).to_sparse()
    assert torch.equal(decode(encode(t)), torch.eye(3))


def test_deep_mixed_nesting_round_trips():
    value = {
        "stages": [[torch.arange(3), {"g": None, "x": [math.nan, "s", (torch.zeros(0, 2),)]}], []],
        "n": 3,
        "ok": True,
    }
    assert same(value, decode(encode(value)))


def test_nesting_up_to_the_limit_round_trips():
    value: object = 1
    for _ in range(wire.MAX_DEPTH):
        value = [value]
    assert decode(encode(value)) == value


# -- refusals when encoding ---------------------------------------------------------------------------


class Custom:
    pass


@pytest.mark.parametrize(
    "value",
    [Custom(), {1, 2}, b"bytes", 1 + 2j, object, print, bytearray(b"x")],
    ids=["object", "set", "bytes", "complex", "class", "function", "bytearray"],
)
def test_unsupported_objects_are_refused(value):
    with pytest.raises(WireError) as excinfo:
        encode({"x": [value]})
    assert "cannot send" in one_line_wire_error(excinfo)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.uint8, torch.int8, torch.int16, torch.float8_e4m3fn], ids=str)
def test_tensors_of_other_dtypes_are_refused(dtype):
    with pytest.raises(WireError) as excinfo:
        encode(torch.zeros(2, dtype=dtype))
    assert "dtype" in one_line_wire_error(excinfo)


@pytest.mark.parametrize("key", ["__tensor__", "__float__"])
def test_reserved_dict_keys_are_refused(key):
    with pytest.raises(WireError) as excinfo:
        encode({"a": {key: 0, "dtype": "float32", "shape": []}})
    one_line_wire_error(excinfo)


def test_non_string_dict_keys_are_refused():
    with pytest.raises(WireError):
        encode({1: "a"})
    with pytest.raises(WireError):
        encode({("t",): "a"})


def test_too_deep_nesting_is_refused_when_encoding():
    value: object = 1
    for _ in range(wire.MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(WireError) as excinfo:
        encode(value)
    assert "deep" in one_line_wire_error(excinfo)


def test_self_referencing_list_is_refused_not_a_recursion_error():
    loop: list = []
    loop.append(loop)
    with pytest.raises(WireError):
        encode(loop)


# -- refusals when decoding --------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 1, 7, 8, 12, -1, -5])
def test_truncated_messages_are_refused(cut):
    data = encode({"x": torch.arange(10.0), "s": "text"})
    with pytest.raises(WireError) as excinfo:
        decode(data[:cut])
    one_line_wire_error(excinfo)


def test_trailing_bytes_are_refused():
    with pytest.raises(WireError):
        decode(encode([1, 2]) + b"\0")


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\xff" * 40,
        b"\0" * 16,
        HEADER.pack(2) + b"[]" + HEADER.pack(3) + b"{{{",
        HEADER.pack(2) + b"[]" + HEADER.pack(2) + b"\xff\xfe",
        HEADER.pack(2**40) + b"[]",
        raw_message(b"{'a': 1}"),
        HEADER.pack(2) + b"[]" + HEADER.pack(2**63) + b"[]",
    ],
)
def test_garbled_messages_are_refused(garbage):
    with pytest.raises(WireError) as excinfo:
        decode(garbage)
    one_line_wire_error(excinfo)


@pytest.mark.parametrize("sizes", [b'{"a": 1}', b"[-1]", b'["4"]', b"[1.5]", b"7"])
def test_bad_blob_size_lists_are_refused(sizes):
    with pytest.raises(WireError):
        decode(raw_message([], sizes, b"\0" * 4))


def test_blob_sizes_that_do_not_add_up_are_refused():
    desc = {"__tensor__": 0, "dtype": "float32", "shape": [2]}
    with pytest.raises(WireError):
        decode(raw_message(desc, [8], b"\0" * 4))  # says 8, carries 4
    with pytest.raises(WireError):
        decode(raw_message(desc, [4], b"\0" * 8))  # says 4, carries 8


@pytest.mark.parametrize("shape,nbytes", [([3], 8), ([2, 2], 12), ([0], 4), ([], 0), ([1], 5)])
def test_tensor_bytes_that_do_not_match_the_shape_are_refused(shape, nbytes):
    with pytest.raises(WireError) as excinfo:
        decode(raw_message({"__tensor__": 0, "dtype": "float32", "shape": shape}, [nbytes], b"\0" * nbytes))
    assert "shape" in one_line_wire_error(excinfo)


@pytest.mark.parametrize(
    "desc",
    [
        {"__tensor__": 1, "dtype": "float32", "shape": [1]},  # no such blob
        {"__tensor__": -1, "dtype": "float32", "shape": [1]},
        {"__tensor__": True, "dtype": "float32", "shape": [1]},  # a bool is not an index
        {"__tensor__": "0", "dtype": "float32", "shape": [1]},
        {"__tensor__": 0.0, "dtype": "float32", "shape": [1]},
        {"__tensor__": 0, "dtype": "float128", "shape": [1]},
        {"__tensor__": 0, "dtype": "uint8", "shape": [4]},
        {"__tensor__": 0, "dtype": "torch.float32", "shape": [1]},
        {"__tensor__": 0, "shape": [1]},
        {"__tensor__": 0, "dtype": "float32", "shape": 1},
        {"__tensor__": 0, "dtype": "float32", "shape": [-1]},
        {"__tensor__": 0, "dtype": "float32", "shape": [True]},
        {"__tensor__": 0, "dtype": "float32", "shape": [1.0]},
        {"__tensor__": 0, "dtype": "float32", "shape": [1, 1, 1, 1, 1, 1, 1, 1, 1]},  # more than 8 dimensions
        {"__tensor__": 0, "dtype": "float32", "shape": None},
    ],
    ids=lambda d: json.dumps(d),
)
def test_bad_tensor_descriptions_are_refused(desc):
    with pytest.raises(WireError) as excinfo:
        decode(raw_message([desc], [4], b"\0" * 4))
    one_line_wire_error(excinfo)


def test_huge_claimed_shape_is_refused_without_allocating():
    desc = {"__tensor__": 0, "dtype": "float64", "shape": [2**31, 2**31, 2**31]}
    with pytest.raises(WireError):
        decode(raw_message(desc, [8], b"\0" * 8))


@pytest.mark.parametrize("text", ["NAN", "nan ", "1e999", "Infinity", ""])
def test_unknown_non_finite_float_spellings_are_refused(text):
    with pytest.raises(WireError):
        decode(raw_message({"__float__": text}))


def test_too_deep_nesting_is_refused_when_decoding():
    doc = "[" * (wire.MAX_DEPTH + 2) + "]" * (wire.MAX_DEPTH + 2)
    with pytest.raises(WireError) as excinfo:
        decode(raw_message(doc.encode()))
    assert "deep" in one_line_wire_error(excinfo)


def test_extremely_deep_nesting_is_a_wire_error_not_a_recursion_error():
    depth = 200_000
    with pytest.raises(WireError):
        decode(raw_message(b"[" * depth + b"]" * depth))


@pytest.mark.parametrize("literal", [b"NaN", b"[Infinity]", b'{"x": -Infinity}'])
def test_bare_json_non_finite_literals_are_refused(literal):
    with pytest.raises(WireError):
        decode(raw_message(literal))


def test_head_length_past_ssize_t_is_a_wire_error():
    with pytest.raises(WireError):
        decode(HEADER.pack(2**63) + b"[]")


def test_too_many_items_are_refused():
    with pytest.raises(WireError):
        decode(raw_message([0] * (wire.MAX_ITEMS + 1)))


def test_non_string_dict_keys_cannot_be_smuggled_in_json():
    back = decode(raw_message(b'{"1": 2}'))
    assert back == {"1": 2}


def test_wire_error_is_a_value_error():
    assert issubclass(WireError, ValueError)


# -- framing over a socket pair ---------------------------------------------------------------------------


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    yield a, b
    a.close()
    b.close()


def test_send_recv_delivers_several_messages_in_order(pair):
    a, b = pair
    messages = [{"op": "F", "x": torch.randn(4, 3)}, [1, None, "x"], math.inf, {"t": torch.zeros(0, 5)}]
    for m in messages:
        wire.send(a, m)
    for m in messages:
        assert same(m, wire.recv(b))


def test_large_message_crosses_in_pieces(pair):
    """A multi-MiB message arrives whole although the socket delivers it in chunks."""
    a, b = pair
    t = torch.randn(1024, 1024)  # 4 MiB
    sender = threading.Thread(target=wire.send, args=(a, {"t": t}))
    sender.start()
    got = wire.recv(b)
    sender.join(10)
    assert torch.equal(got["t"], t)


def test_recv_refuses_a_frame_over_its_limit_before_reading_it(pair):
    a, b = pair
    wire.send(a, {"t": torch.zeros(1000)})
    with pytest.raises(WireError) as excinfo:
        wire.recv(b, limit=1000)
    assert "limit" in one_line_wire_error(excinfo)


def test_recv_refuses_a_forged_huge_length_without_waiting_for_it(pair):
    a, b = pair
    a.sendall(HEADER.pack(2**62))
    with pytest.raises(WireError):
        wire.recv(b)


def test_send_refuses_a_message_over_the_limit_and_sends_nothing(pair, monkeypatch):
    a, b = pair
    monkeypatch.setattr(wire, "MAX_MESSAGE_BYTES", 1000)
    with pytest.raises(WireError) as excinfo:
        wire.send(a, torch.zeros(1000))
    assert "limit" in one_line_wire_error(excinfo)
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(1)


def test_recv_reports_eof_when_the_peer_closed(pair):
    a, b = pair
    a.close()
    with pytest.raises(EOFError):
        wire.recv(b)


def test_recv_reports_eof_in_the_middle_of_a_frame(pair):
    a, b = pair
    data = encode({"x": torch.arange(100.0)})
    a.sendall(HEADER.pack(len(data)) + data[: len(data) // 2])
    a.close()
    with pytest.raises(EOFError):
        wire.recv(b)


def test_recv_reports_eof_in_the_middle_of_the_length(pair):
    a, b = pair
    a.sendall(b"\0\0\0")
    a.close()
    with pytest.raises(EOFError):
        wire.recv(b)


def test_recv_of_a_garbled_frame_is_a_wire_error(pair):
    a, b = pair
    a.sendall(HEADER.pack(10) + b"\xff" * 10)
    with pytest.raises(WireError):
        wire.recv(b)
