#!/usr/bin/env python3
"""Checks that a PNG screenshot shows a rendered page: its size, how much of it is not the page
background, and how many distinct colours it has. Standard library only (zlib), so it runs
wherever Python does.

usage: png_stats.py FILE WIDTH HEIGHT MIN_COLOURS MIN_INK_PERCENT
"""
import struct
import sys
import zlib


def decode(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG file")
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace:
        sys.exit(f"{path}: unsupported PNG (depth {depth}, colour type {colour_type}, interlace {interlace})")
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = prev[x]
            corner = prev[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def main():
    path, want_w, want_h, min_colours, min_ink = sys.argv[1], *map(int, sys.argv[2:6])
    width, height, channels, rows = decode(path)
    counts = {}
    for row in rows[::2]:
        for x in range(0, width * channels, channels * 2):
            # Quantised to 32 levels per channel, so anti-aliasing does not count as variety.
            key = (row[x] >> 3, row[x + 1] >> 3, row[x + 2] >> 3)
            counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    background, most = max(counts.items(), key=lambda kv: kv[1])
    ink = 100 * (total - most) / total
    colours = sum(1 for n in counts.values() if n >= total / 2000)
    print(f"{path}: {width}x{height}, {colours} colours, {ink:.0f}% not background")
    problems = []
    if (width, height) != (want_w, want_h):
        problems.append(f"size {width}x{height}, expected {want_w}x{want_h}")
    if colours < min_colours:
        problems.append(f"only {colours} colours (at least {min_colours} expected)")
    if ink < min_ink:
        problems.append(f"only {ink:.0f}% of the page is drawn (at least {min_ink}% expected)")
    if problems:
        sys.exit("the page did not render: " + "; ".join(problems))


main()
