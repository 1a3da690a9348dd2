"""The start of RTMP spoken by the origin, and the chunk stream both ways. Pure, table-driven."""

from __future__ import annotations

import struct

import pytest

from origin_media.sources.rtmp_gate import (
    CHUNK_SIZE,
    HANDSHAKE,
    FfmpegAnswers,
    Publish,
    PublishGate,
    client_ack,
)
from origin_media.sources.rtmp_wire import ChunkReader, Message, RtmpProtocolError, amf0, parse_command, write_message

from .rtmp_client import amf_command, amf_string, chunks


def client_bytes(key: str, app: str = "live", chunk_size: int = 128) -> bytes:
    connect_obj = b"\x03" + struct.pack(">H", 3) + b"app" + amf_string(app) + b"\x00\x00\x09"
    out = b"\x03" + bytes(1536) + bytes(1536)
    if chunk_size != 128:
        out += chunks(struct.pack(">I", chunk_size), 1, 128, csid=2)
    out += chunks(amf_command("connect", connect_obj), 20, chunk_size)
    out += chunks(amf_command("createStream", b"\x05"), 20, chunk_size)
    out += chunks(amf_command("publish", b"\x05", amf_string(key), amf_string("live")), 20, chunk_size)
    return out


def answers(data: bytes) -> list[Message]:
    """The gate's answers after S0 S1 S2, as messages (its Set Chunk Size applied)."""
    return ChunkReader(1 << 20).feed(data[1 + 2 * HANDSHAKE :])


@pytest.mark.parametrize("chunk_size", [128, 4096, 16])
@pytest.mark.parametrize("step", [1, 7, 100_000])
def test_gate_finds_app_and_key_however_bytes_arrive(chunk_size: int, step: int) -> None:
    data = client_bytes("k" * 40, chunk_size=chunk_size)
    gate, answer = PublishGate(), b""
    for i in range(0, len(data), step):
        answer += gate.feed(data[i : i + step])
    assert gate.publish == Publish("live", "k" * 40)
    assert gate.replay == data[1 + 2 * HANDSHAKE :], "FFmpeg is handed every byte after C2"
    assert "k" * 40 not in repr(gate.publish), "keys are secrets"
    assert answer[0] == 3 and answer[1 + HANDSHAKE : 1 + 2 * HANDSHAKE] == data[1 : 1 + HANDSHAKE], "S2 echoes C1"


def test_gate_answers_as_ffmpeg_listen_mode_does() -> None:
    gate = PublishGate()
    messages = answers(gate.feed(client_bytes("key")))
    assert [m.type_id for m in messages] == [5, 6, 4, 1, 20, 20]
    result = parse_command(messages[4].body)
    assert (result.name, result.transaction) == ("_result", 1.0)
    assert result.args[1]["code"] == "NetConnection.Connect.Success"
    created = parse_command(messages[5].body)
    assert (created.name, created.args) == ("_result", [None, 1.0]), "stream id 1, as FFmpeg numbers them"
    started = ChunkReader(CHUNK_SIZE).feed(gate.started())
    assert parse_command(started[1].body).args[1]["code"] == "NetStream.Publish.Start"
    refused = parse_command(ChunkReader(CHUNK_SIZE).feed(gate.refused("no"))[0].body)
    assert refused.args[1]["code"] == "NetStream.Publish.BadName"


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01" + bytes(100),
        client_bytes("k")[: 1 + 2 * HANDSHAKE] + b"\x03" + bytes(3) + (100_000).to_bytes(3, "big") + b"\x14" + bytes(4),
        client_bytes("k")[: 1 + 2 * HANDSHAKE] + chunks(b"\x07" + bytes(20), 20, 128),
    ],
    ids=["http", "tls", "oversized-command", "bad-amf0"],
)
def test_gate_rejects_what_is_not_a_publisher(garbage: bytes) -> None:
    with pytest.raises(RtmpProtocolError):
        PublishGate().feed(garbage)


def test_gate_notes_the_timestamp_of_the_first_media_frame() -> None:
    gate = PublishGate()
    gate.feed(client_bytes("key"))
    assert gate.publish == Publish("live", "key")
    config = b"\x17\x00" + bytes(8)  # AVC sequence header: not a frame
    header0 = bytes([4]) + (1000).to_bytes(3, "big") + len(config).to_bytes(3, "big") + b"\x09" + bytes(4)
    frame = b"\x17\x01" + bytes(20)
    header1 = bytes([0x40 | 4]) + (40).to_bytes(3, "big") + len(frame).to_bytes(3, "big") + b"\x09"
    gate.feed(header0 + config)
    assert gate.first_media is None
    gate.feed(header1 + frame)
    assert gate.first_media == (9, 1040), "type 0 is absolute, type 1 a delta (rtmppkt.c)"


@pytest.mark.parametrize(
    "message",
    [
        Message(2, 3, 0, 5, b"\x00\x00\x10\x00"),
        Message(70, 9, 1, 0x1234567, bytes(range(256)) * 40),
        Message(400, 8, 3, 0xFFFFFF, b"x" * 9000),  # extended timestamp, on every chunk
        Message(3, 20, 0, 0, b""),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 128, 4096])
def test_messages_survive_chunking(message: Message, chunk_size: int) -> None:
    reader = ChunkReader(1 << 20)
    reader.chunk_size = chunk_size
    data = write_message(message, chunk_size) * 2
    got = [m for i in range(0, len(data), 333) for m in reader.feed(data[i : i + 333])]
    assert got == [message, message]


def test_ffmpeg_answers_are_dropped_until_publish_start_then_rechunked() -> None:
    def command(*values: object) -> bytes:
        return write_message(Message(3, 20, 1, 0, amf0(*values)), 128)

    ack = Message(2, 3, 0, 0, struct.pack(">I", 1_000_000))
    to_client = FfmpegAnswers()
    assert to_client.feed(command("_result", 1, None, {"code": "NetConnection.Connect.Success"})) == b""
    start = command("onStatus", 0, None, {"level": "status", "code": "NetStream.Publish.Start"})
    # FFmpeg's Set Chunk Size applies to what it sends next; the client never sees it
    resize = write_message(Message(2, 1, 0, 0, struct.pack(">I", 60_000)), 128)
    assert to_client.feed(start + resize + write_message(ack, 60_000)) == write_message(ack, CHUNK_SIZE)
    assert to_client.published
    with pytest.raises(RtmpProtocolError):
        FfmpegAnswers().feed(command("onStatus", 0, None, {"level": "error", "code": "NetStream.Publish.BadName"}))


def test_our_handshake_with_ffmpeg_echoes_s1() -> None:
    s1 = bytes(range(256)) * 6
    assert client_ack(b"\x03" + s1 + bytes(HANDSHAKE)) == s1
    with pytest.raises(RtmpProtocolError):
        client_ack(b"\x06" + s1 + bytes(HANDSHAKE))
