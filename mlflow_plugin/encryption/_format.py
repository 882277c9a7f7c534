"""The encrypted file format: a fixed 128-byte header, then AES-256-GCM chunks.

::

    header (128 bytes, authenticated as associated data of every chunk)
      0   4  magic b"MLPE"
      4   1  format version (1)
      5   1  log2 of the plaintext chunk size (20: 1 MiB)
      6   1  length of the key id        7   1  length of the workspace name
      8  12  the file's random 96-bit nonce
     20  32  key id (ASCII, zero padded)
     52  64  workspace (ASCII, zero padded)
    116  12  reserved (zero)
    chunk i: AES-GCM(plaintext[i*C:(i+1)*C]) + 16-byte tag
      nonce = file nonce XOR i;  AAD = header || i (8 bytes) || final flag (1 byte)

Each chunk is authenticated with its index and whether it is the last one, so chunks cannot be
reordered, dropped or the file truncated at a chunk boundary without the tag check failing; a
file is processed one chunk at a time (two chunks in memory, never the whole file). The header is
fixed-size so that a listing can report the plaintext size from the stored size alone
(:func:`plaintext_size`). docs/ARCHITECTURE.md, "Encryption at rest".
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "EncryptionFailure",
    "HEADER_SIZE",
    "Header",
    "MAGIC",
    "decrypt_stream",
    "encrypt_stream",
    "plaintext_size",
    "read_header",
]

MAGIC = b"MLPE"
VERSION = 1
HEADER_SIZE = 128
TAG_SIZE = 16
NONCE_SIZE = 12
DEFAULT_CHUNK_LOG2 = 20
_KEY_ID_MAX = 32
_WORKSPACE_MAX = 64
_FIXED = struct.Struct(">4sBBBB12s32s64s12s")


class EncryptionFailure(Exception):
    """A file cannot be encrypted or decrypted; ``kind`` says why.

    ``key_missing`` (no key for the workspace / key id), ``key_config`` (the key file or
    variable is malformed), ``workspace_mismatch`` (the file belongs to another workspace),
    ``decrypt_failed`` (wrong key, tampered or truncated), ``not_encrypted`` (no header).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Header:
    key_id: str
    workspace: str
    nonce: bytes
    chunk_log2: int = DEFAULT_CHUNK_LOG2
    version: int = VERSION

    def pack(self) -> bytes:
        key_id, workspace = self.key_id.encode("ascii"), self.workspace.encode("ascii")
        if not 0 < len(key_id) <= _KEY_ID_MAX or not 0 < len(workspace) <= _WORKSPACE_MAX:
            raise EncryptionFailure("key_config", "key id or workspace name too long")
        return _FIXED.pack(
            MAGIC,
            self.version,
            self.chunk_log2,
            len(key_id),
            len(workspace),
            self.nonce,
            key_id,
            workspace,
            b"\0" * 12,
        )

    @classmethod
    def unpack(cls, raw: bytes, what: str = "artifact") -> Header:
        if len(raw) < HEADER_SIZE or raw[:4] != MAGIC:
            raise EncryptionFailure(
                "not_encrypted", f"{what} is not an encrypted artifact (no MLPE header)"
            )
        magic, version, log2, klen, wlen, nonce, key_id, workspace, _ = _FIXED.unpack(
            raw[:HEADER_SIZE]
        )
        if version != VERSION or not 10 <= log2 <= 30 or not klen or not wlen:
            raise EncryptionFailure(
                "decrypt_failed", f"{what} has an unknown encryption header (version {version})"
            )
        try:
            return cls(key_id[:klen].decode("ascii"), workspace[:wlen].decode("ascii"), nonce, log2)
        except UnicodeDecodeError:
            raise EncryptionFailure("decrypt_failed", f"{what} has a corrupt header") from None


def _read_full(src: BinaryIO, size: int) -> bytes:
    parts, missing = [], size
    while missing:
        part = src.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _nonce(base: bytes, index: int) -> bytes:
    return (int.from_bytes(base, "big") ^ index).to_bytes(NONCE_SIZE, "big")


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key: bytes,
    key_id: str,
    workspace: str,
    *,
    chunk_log2: int = DEFAULT_CHUNK_LOG2,
) -> Header:
    """Encrypt ``src`` into ``dst`` under a fresh random nonce; the header written."""
    header = Header(key_id, workspace, os.urandom(NONCE_SIZE), chunk_log2)
    raw = header.pack()
    dst.write(raw)
    aes = AESGCM(key)
    size = 1 << chunk_log2
    chunk, index = _read_full(src, size), 0
    while True:
        following = _read_full(src, size) if len(chunk) == size else b""
        final = not following
        dst.write(aes.encrypt(_nonce(header.nonce, index), chunk, _aad(raw, index, final)))
        if final:
            return header
        chunk, index = following, index + 1


def read_header(src: BinaryIO, what: str = "artifact") -> tuple[Header, bytes]:
    raw = _read_full(src, HEADER_SIZE)
    return Header.unpack(raw, what), raw


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    key_for: Callable[[Header], bytes],
    *,
    what: str = "artifact",
) -> Header:
    """Decrypt ``src`` into ``dst``; ``key_for(header)`` returns the key the header names.

    Raises:
        EncryptionFailure: not encrypted, no key, or a chunk fails authentication (wrong key,
            tampered, reordered or truncated). ``dst`` may then hold a prefix of the plaintext:
            callers write to a temporary file and keep it only on success.
    """
    header, raw = read_header(src, what)
    aes = AESGCM(key_for(header))
    block = (1 << header.chunk_log2) + TAG_SIZE
    chunk, index = _read_full(src, block), 0
    while True:
        following = _read_full(src, block) if len(chunk) == block else b""
        final = not following
        try:
            plain = aes.decrypt(_nonce(header.nonce, index), chunk, _aad(raw, index, final))
        except (InvalidTag, ValueError):
            raise EncryptionFailure(
                "decrypt_failed",
                f"{what} failed authentication at chunk {index} with key "
                f"'{header.key_id}' of workspace '{header.workspace}': wrong key, or the "
                "ciphertext was tampered with or truncated",
            ) from None
        dst.write(plain)
        if final:
            return header
        chunk, index = following, index + 1


def plaintext_size(stored: int, chunk_log2: int = DEFAULT_CHUNK_LOG2) -> int:
    """The plaintext size of a file stored as ``stored`` bytes (written with ``chunk_log2``)."""
    body = stored - HEADER_SIZE
    if body < TAG_SIZE:
        return max(stored, 0)  # not one of ours: report what is there
    block = (1 << chunk_log2) + TAG_SIZE
    chunks = -(-body // block)
    return body - chunks * TAG_SIZE
