"""What the edge reads from a WHEP offer before aiortc sees it (pure, table-driven)."""

from __future__ import annotations

import pytest

from edge.whep_offer import offered_kinds, pin_host_addresses, without_mdns_candidates

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\n"


@pytest.mark.parametrize(
    ("media", "kinds"),
    [
        (
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n",
            ("video", "audio"),
        ),
        ("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n", ("audio",)),
        (
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n",
            ("audio",),
        ),
        ("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", ("video",)),
    ],
)
def test_offered_kinds(media: str, kinds: tuple[str, ...]) -> None:
    assert offered_kinds(HEAD + media) == kinds


@pytest.mark.parametrize(
    ("sdp", "says"),
    [
        ("", "v=0"),
        ("hello", "v=0"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "fingerprint"),
        (HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n", "receive no audio or video"),
        (HEAD + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "receive no audio or video"),
    ],
)
def test_unusable_offers_say_why(sdp: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        offered_kinds(sdp)


def test_mdns_candidates_are_dropped_and_others_kept() -> None:
    sdp = (
        HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:1 1 udp 2113937151 2bb7ac22-37a5.local 37904 typ host\r\n"
        "a=candidate:2 1 udp 2113937151 127.0.0.1 37905 typ host\r\n"
    )
    out = without_mdns_candidates(sdp)
    assert ".local" not in out and "127.0.0.1 37905" in out
    assert (
        out.replace("a=candidate:2 1 udp 2113937151 127.0.0.1 37905 typ host\r\n", "")
        == HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    )


def test_host_address_pins_nest_and_restore_aioice() -> None:
    import aioice.ice

    original = aioice.ice.get_host_addresses
    unpin_v4 = pin_host_addresses(("127.0.0.1",))
    unpin_both = pin_host_addresses(("127.0.0.1", "::1"))
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    unpin_both()
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    unpin_v4()
    assert aioice.ice.get_host_addresses is original
