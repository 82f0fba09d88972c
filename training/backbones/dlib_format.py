"""A reader for dlib's DNN serialization format (the ``.dat`` files of ``dlib::serialize``).

Pure Python + numpy: no dlib needed to read the weights. Written from dlib's
``serialize.h`` / ``dnn/core.h`` / ``dnn/layers.h`` conventions:

- integers are "packed": one control byte (low nibble = number of value bytes that
  follow, bit 7 = negative) then the magnitude, little-endian;
- a floating-point number is two packed integers, mantissa and exponent (m * 2**e);
- a string is a packed length then its bytes; a bool is the character '1' or '0';
- a tensor is version 2, four packed dims (num_samples, k, nr, nc), then raw
  little-endian float32 values; an alias tensor (a view into a layer's ``params``) is
  version 1 and four dims.

A network ``add_loss_layer<LOSS, add_layer<L1, add_layer<L2, ... input>>>`` is written as:
loss version, loss details, then the version of every nested level from the outside in
(``add_layer`` = 2, or 3 for the level holding the input layer; ``add_tag_layer`` and
``add_skip_layer`` = 1), then -- innermost first -- each ``add_layer``'s details followed
by its state (three bools, three tensors, and for the input level one more integer).
Tags and skips carry no data, so the topology (where the residual branches join) is not in
the file: the PyTorch module that uses these weights states it (``dlib_resnet.py``) and
checks the layer sequence read here against it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


class DlibFormatError(ValueError):
    """The file is not a dlib network this reader understands; the message says where."""


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.source}: {what} at byte {self.pos}")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self) -> int:
        control = self.byte()
        size = control & 0x0F
        if size > 8:
            raise self.fail(f"bad integer control byte {control:#x}")
        raw = self.data[self.pos:self.pos + size]
        if len(raw) != size:
            raise self.fail("unexpected end of file inside an integer")
        self.pos += size
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa) * 2.0 ** exponent

    def bool(self) -> bool:
        ch = self.byte()
        if ch not in (ord("0"), ord("1")):
            raise self.fail(f"expected a bool ('0' or '1'), found {ch:#x}")
        return ch == ord("1")

    def str(self) -> str:
        n = self.int()
        if not 0 <= n < 1 << 16:
            raise self.fail(f"implausible string length {n}")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def peek_str(self) -> str | None:
        """The string at the current position if one plausibly starts here, without consuming it."""
        start = self.pos
        try:
            n = self.int()
            if not 0 < n < 64:
                return None
            raw = self.data[self.pos:self.pos + n]
            text = raw.decode("ascii")
            return text if text.isprintable() else None
        except (DlibFormatError, UnicodeDecodeError):
            return None
        finally:
            self.pos = start

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise self.fail("unexpected end of file inside a tensor")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos = end
        return values.astype(np.float32)

    def alias_shape(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class DlibLayer:
    """One layer's details as read from the file. ``kind`` drops dlib's version suffix."""

    kind: str
    version: str
    params: dict[str, Any] = field(default_factory=dict)


def _split_params(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    flat = params.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[offset:offset + n].reshape(shape).copy())
        offset += n
    if offset != flat.size:
        raise DlibFormatError(f"layer params hold {flat.size} values, the views need {offset}")
    return out


def _read_con(r: _Reader, version: str) -> dict[str, Any]:
    params = r.tensor()
    num_filters, nr, nc = r.int(), r.int(), r.int()
    stride_y, stride_x, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
    w_shape, b_shape = r.alias_shape(), r.alias_shape()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float()
    use_bias = r.bool() if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool()  # use_relu (a fused activation flag; not set by the face ResNet)
    weight, bias = _split_params(params, w_shape, b_shape) if use_bias else (
        _split_params(params, w_shape)[0], np.zeros(b_shape, np.float32))
    return {"weight": weight, "bias": bias.reshape(-1), "num_filters": num_filters, "kernel": (nr, nc),
            "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)}


def _read_affine(r: _Reader, version: str) -> dict[str, Any]:
    params = r.tensor()
    g_shape, b_shape = r.alias_shape(), r.alias_shape()
    mode = r.int()
    disabled = r.bool() if version == "affine_2" else False
    gamma, beta = _split_params(params, g_shape, b_shape)
    return {"gamma": gamma.reshape(-1), "beta": beta.reshape(-1), "mode": mode, "disabled": disabled}


def _read_pool(r: _Reader, version: str) -> dict[str, Any]:
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(6))
    return {"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)}


def _read_fc(r: _Reader, version: str) -> dict[str, Any]:
    num_outputs, num_inputs = r.int(), r.int()
    params = r.tensor()
    w_shape, b_shape = r.alias_shape(), r.alias_shape()
    bias_mode = r.int()  # 0 = has bias, 1 = no bias
    for _ in range(4):
        r.float()
    if version == "fc_3":
        r.bool()  # use_bias
    if bias_mode == 0:
        weight, bias = _split_params(params, w_shape, b_shape)
    else:
        weight, bias = _split_params(params, w_shape)[0], None
    # dlib stores fc weights as [num_inputs, num_outputs] (output = input @ W).
    return {"weight": weight.reshape(num_inputs, num_outputs),
            "bias": None if bias is None else bias.reshape(-1),
            "num_outputs": num_outputs, "num_inputs": num_inputs}


def _read_relu(r: _Reader, version: str) -> dict[str, Any]:
    return {"disabled": r.bool() if version == "relu_2" else False}


def _read_nothing(r: _Reader, version: str) -> dict[str, Any]:
    return {}


def _read_input_rgb_sized(r: _Reader, version: str) -> dict[str, Any]:
    mean = (r.float(), r.float(), r.float())
    return {"mean_rgb": mean, "size": (r.int(), r.int())}


def _read_loss_metric(r: _Reader, version: str) -> dict[str, Any]:
    return {"margin": r.float(), "dist_thresh": r.float()}


# version string -> (kind, reader)
_LAYERS: dict[str, tuple[str, Callable[[_Reader, str], dict[str, Any]]]] = {
    **{v: ("con", _read_con) for v in ("con_4", "con_5", "con_6")},
    **{v: ("affine", _read_affine) for v in ("affine_", "affine_2")},
    **{v: ("relu", _read_relu) for v in ("relu_", "relu_2")},
    "max_pool_2": ("max_pool", _read_pool),
    "avg_pool_2": ("avg_pool", _read_pool),
    **{v: ("fc", _read_fc) for v in ("fc_2", "fc_3")},
    "add_prev_": ("add_prev", _read_nothing),
}
_INPUTS = {"input_rgb_image_sized": ("input_rgb_image_sized", _read_input_rgb_sized)}
_LOSSES = {"loss_metric_": ("loss_metric", _read_loss_metric), "loss_metric_2": ("loss_metric", _read_loss_metric)}


def _read_details(r: _Reader, table: dict) -> DlibLayer:
    version = r.str()
    if version not in table:
        raise r.fail(f"unsupported layer '{version}' (this reader knows: {', '.join(sorted(table))})")
    kind, reader = table[version]
    return DlibLayer(kind, version, reader(r, version))


@dataclass(frozen=True)
class DlibNet:
    loss: DlibLayer
    input: DlibLayer
    layers: tuple[DlibLayer, ...]  # innermost (next to the input) first
    levels: tuple[int, ...]  # every nesting level's version, innermost first (1 = tag or skip)

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read a serialized ``add_loss_layer<...>`` network; raise DlibFormatError on anything unexpected."""
    path = Path(path)
    if not path.is_file():
        raise DlibFormatError(f"{path}: no such file")
    r = _Reader(path.read_bytes(), str(path))
    if r.int() != 1:
        raise r.fail("not a dlib network (expected add_loss_layer version 1)")
    loss = _read_details(r, _LOSSES)
    levels: list[int] = []
    while r.peek_str() not in _INPUTS:
        version = r.int()
        if version not in (1, 2, 3):
            raise r.fail(f"unexpected layer nesting version {version}")
        levels.append(version)
        if len(levels) > 10_000:
            raise r.fail("no input layer found")
    if not levels or levels[-1] != 3:
        raise r.fail("the level holding the input layer should be version 3")
    levels.reverse()
    input_layer = _read_details(r, _INPUTS)
    layers = []
    for version in levels:
        if version == 1:  # a tag or skip level: nothing stored
            continue
        layers.append(_read_details(r, _LAYERS))
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output..._disabled
            r.bool()
        for _ in range(3):  # x_grad, cached_output, params_grad / grad_final
            r.tensor()
        if version == 3:
            r.int()  # _sample_expansion_factor
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left after the last layer")
    return DlibNet(loss, input_layer, tuple(layers), tuple(levels))
