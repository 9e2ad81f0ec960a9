#!/usr/bin/env python3
"""A test black box speaking modeaudit's external-program protocol.

Standard library only, so the tests need nothing installed. It greets with
its sizes, then answers each float32 .npy batch of latent codes with
embeddings: embedding j of a code z is the sum of z[i] * cos(i + j), a fixed
linear map, so answers can be checked from the codes.

    embedder.py LATENT EMBED [MODE]

MODE makes it misbehave, for the failure tests: `die` exits after the first
batch, `hang` stops answering at the second batch, `short` answers with one
row too few, `garbage` answers with bytes that are not .npy, `nogreet` never
greets, `badgreet` greets with text that is not JSON.
"""

import ast
import json
import math
import struct
import sys
import time
from array import array


def read_npy(stream):
    magic = stream.read(6)
    if not magic:
        return None
    assert magic == b"\x93NUMPY", magic
    major, _minor = stream.read(2)
    size_bytes = 2 if major == 1 else 4
    (header_len,) = struct.unpack("<H" if size_bytes == 2 else "<I", stream.read(size_bytes))
    header = ast.literal_eval(stream.read(header_len).decode("latin1"))
    assert header["descr"] == "<f4" and not header["fortran_order"], header
    rows, cols = header["shape"]
    values = array("f")
    values.frombytes(stream.read(rows * cols * 4))
    return rows, cols, values


def write_npy(stream, rows, cols, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    padding = 64 - (10 + len(header) + 1) % 64
    header = header + " " * padding + "\n"
    stream.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
    stream.write(array("f", values).tobytes())
    stream.flush()


def main():
    latent, embed = int(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "ok"
    out = sys.stdout.buffer
    if mode == "nogreet":
        time.sleep(3600)
    if mode == "badgreet":
        out.write(b"hello\n")
        out.flush()
    else:
        out.write((json.dumps({"latent_dim": latent, "embed_dim": embed}) + "\n").encode())
        out.flush()
    weights = [[math.cos(i + j) for j in range(embed)] for i in range(latent)]
    batch = 0
    while True:
        request = read_npy(sys.stdin.buffer)
        if request is None:
            return
        batch += 1
        rows, cols, z = request
        if mode == "hang" and batch == 2:
            time.sleep(3600)
        if mode == "garbage":
            out.write(b"this is not an npy array")
            out.flush()
            continue
        answer = []
        for r in range(rows):
            code = z[r * cols:(r + 1) * cols]
            answer.extend(sum(code[i] * weights[i][j] for i in range(cols)) for j in range(embed))
        if mode == "short":
            rows -= 1
            answer = answer[: rows * embed]
        write_npy(out, rows, embed, answer)
        if mode == "die":
            sys.exit(3)


if __name__ == "__main__":
    main()
