"""Generate the demo site's large assets at start (not committed): a PNG and a 20 MB download."""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

DOWNLOAD_BYTES = 20 * 1024 * 1024


def png(width: int, height: int) -> bytes:
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows += bytes((x * 255 // width, y * 255 // height, 160))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def download(path: Path) -> None:
    """Deterministic bytes (a hash chain), so a resumed download can be checked."""
    block = hashlib.sha256(b"cdn demo").digest() * 2048  # 64 KiB
    with path.open("wb") as out:
        for i in range(DOWNLOAD_BYTES // len(block)):
            out.write(block[i % 32 :] + block[: i % 32])


def main(site: Path) -> None:
    (site / "images").mkdir(parents=True, exist_ok=True)
    (site / "download").mkdir(parents=True, exist_ok=True)
    image = site / "images" / "gradient.png"
    if not image.exists():
        image.write_bytes(png(480, 270))
    big = site / "download" / "sample-20MB.bin"
    if not big.exists() or big.stat().st_size != DOWNLOAD_BYTES:
        download(big)
        print(f"made {big} ({DOWNLOAD_BYTES} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "site"))
