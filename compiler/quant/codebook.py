"""Codebook-quantized weights: packed low-bit indices plus a float codebook.

A `PackedWeight` is what a quantizer hands to the IR: its `packed` bytes and `codebook` become
graph weights feeding one `CodebookDequantize` node (see `add_to_graph`), which every executor
and the ONNX exporter run. The bit math itself lives in `mlc.compiler.ir.reference`, so the IR
does not depend on this package.

    >>> weight = PackedWeight.from_indices(indices, codebook, bits=3, axis=0)
    >>> weight.compression_ratio()          # about 32 / 3 for a large weight
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlc.compiler.ir.reference import codebook_dequantize, unpack_indices
from mlc.compiler.ir.shapes import norm_axis, packed_length

__all__ = ["PackedWeight", "pack_indices", "unpack_indices"]


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")


def pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Indices as a little-endian bitstream of ceil(n * bits / 8) uint8 bytes.

    Flat index i occupies stream bits [i*bits, (i+1)*bits), and stream bit j is bit j%8 of
    byte j//8, so a 3-bit index may straddle two bytes. `unpack_indices` inverts it.

    >>> pack_indices(np.array([0, 1, 2, 3]), bits=2)
    array([228], dtype=uint8)
    """
    _check_bits(bits)
    flat = np.asarray(indices).reshape(-1)
    if flat.size and not np.issubdtype(flat.dtype, np.integer):
        raise ValueError(f"indices must be integers, got {flat.dtype}")
    flat = flat.astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        bad = flat[(flat < 0) | (flat >= 1 << bits)][0]
        raise ValueError(f"index {bad} does not fit in {bits} bits (0..{(1 << bits) - 1})")
    # one row of bits per index, LSB first; uint8 keeps the n x bits temporary small
    stream = (flat.astype(np.uint8)[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    packed = np.packbits(stream.reshape(-1), bitorder="little")
    return packed[:packed_length(flat.size, bits)]


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class PackedWeight:
    """A dense float weight of `shape` stored as `bits`-bit codebook indices.

    packed: uint8[ceil(prod(shape) * bits / 8)], the indices in row-major order.
    codebook: float32[K], one shared codebook, or float32[C, K] with C = shape[axis], one
    codebook per slice along `axis`. K <= 2**bits.
    """

    packed: np.ndarray
    codebook: np.ndarray
    bits: int
    shape: tuple[int, ...]
    axis: int | None = None

    def __post_init__(self):
        _check_bits(self.bits)
        shape = tuple(int(d) for d in self.shape)
        packed = np.ascontiguousarray(self.packed, dtype=np.uint8).reshape(-1)
        codebook = np.ascontiguousarray(self.codebook, dtype=np.float32)
        axis = None if self.axis is None else norm_axis(int(self.axis), len(shape))
        need = packed_length(int(np.prod(shape, dtype=np.int64)), self.bits)
        if packed.size != need:
            raise ValueError(f"packed has {packed.size} bytes; shape {list(shape)} at "
                             f"{self.bits} bits needs {need}")
        rows = () if axis is None else (shape[axis],)
        if codebook.ndim != len(rows) + 1 or codebook.shape[:-1] != rows:
            raise ValueError(f"codebook shape {codebook.shape} should be {rows + ('K',)} for "
                             f"axis={axis}")
        if not 1 <= codebook.shape[-1] <= 1 << self.bits:
            raise ValueError(f"codebook has {codebook.shape[-1]} entries; {self.bits}-bit "
                             f"indices address 1..{1 << self.bits}")
        for name, value in (("shape", shape), ("packed", packed), ("codebook", codebook),
                            ("axis", axis), ("bits", int(self.bits))):
            object.__setattr__(self, name, value)

    @staticmethod
    def from_indices(indices: np.ndarray, codebook: np.ndarray, bits: int,
                     axis: int | None = None) -> PackedWeight:
        """Pack integer `indices` (the weight's shape) against `codebook`.

        >>> PackedWeight.from_indices(np.array([[0, 3], [1, 2]]), np.arange(4.0), bits=2)
        """
        indices = np.asarray(indices)
        codebook = np.asarray(codebook)
        entries = codebook.shape[-1] if codebook.ndim else 0
        if indices.size and indices.max() >= entries:
            raise ValueError(f"index {indices.max()} is past the codebook's {entries} entries")
        return PackedWeight(pack_indices(indices, bits), codebook, bits, indices.shape, axis)

    @property
    def count(self) -> int:
        """Number of weight elements (indices)."""
        return int(np.prod(self.shape, dtype=np.int64))

    def indices(self) -> np.ndarray:
        """The int64 codebook indices, in the weight's shape."""
        return unpack_indices(self.packed, self.bits, self.count).reshape(self.shape)

    def dequantize(self) -> np.ndarray:
        """The dense float32 weight: codebook[index], or codebook[channel, index] along axis."""
        return codebook_dequantize(self.packed, self.codebook, self.bits, self.shape, self.axis)

    def nbytes(self) -> int:
        """Storage bytes: the packed indices plus the codebook(s)."""
        return int(self.packed.nbytes + self.codebook.nbytes)

    def compression_ratio(self) -> float:
        """Bytes of the dense float32 weight divided by `nbytes()`."""
        return 4 * self.count / self.nbytes()

    def attrs(self) -> dict:
        """The CodebookDequantize attributes that describe this weight."""
        return {"bits": self.bits, "shape": list(self.shape), "axis": self.axis}

    def add_to_graph(self, builder, name: str) -> str:
        """Add `name.packed` and `name.codebook` weights and a CodebookDequantize node to a
        GraphBuilder; returns the dense weight's value name.

        >>> w = packed.add_to_graph(b, "fc1.weight"); y = b.op("MatMul", x, w)
        """
        packed = builder.weight(f"{name}.packed", self.packed)
        codebook = builder.weight(f"{name}.codebook", self.codebook)
        return builder.op("CodebookDequantize", packed, codebook, name=name, **self.attrs())
