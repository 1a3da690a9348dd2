// The watch page: plays /live/STREAM from this page's own host (an edge of the streaming
// distribution) with hls.js (LL-HLS or HLS) or WebRTC (WHEP), and shows what a viewer notices.
// Everything shown is also in window.playerStats, which the browser tests read.
"use strict";
(() => {
  // more modes come from their own scripts (watch-dash.js): { label, start(page) }
  const extraModes = window.playerModes || {};
  const MODES = ["llhls", "hls", "webrtc", ...Object.keys(extraModes)];
  const stream = decodeURIComponent(location.pathname.split("/")[2] || "");
  const asked = new URLSearchParams(location.search).get("mode");
  const mode = MODES.includes(asked) ? asked : "llhls";
  const video = document.getElementById("video");
  const stats = {
    stream, mode,
    state: "loading",        // loading | playing | stalled | reconnecting | error
    currentTime: 0,          // of the <video>, seconds
    playedSeconds: 0,        // media time actually played (video.played), seconds
    watchedSeconds: 0,       // wall time spent playing (not loading, stalled or paused), seconds
    latency: null,           // seconds behind live (never negative; null when not known)
    latencySource: null,     // what `latency` measures: "program-date-time", "hls.js", "rtcp-sender-report"
    latencyHls: null,        // hls.js's own estimate (distance to the live edge)
    latencyPdt: null,        // now - EXT-X-PROGRAM-DATE-TIME of the frame showing
    rendition: null,         // "320x180"
    bitrate: null,           // bits/s: the rendition's BANDWIDTH (HLS) or measured (WebRTC)
    bandwidthEstimate: null, // hls.js's estimate of the network, bits/s
    stalls: 0,               // playback waited for data after it had started
    errors: [],              // fatal problems, as text
    edge: null,              // which edge served the last media response (from Cache-Status)
    cacheStatus: null,       // that response's Cache-Status
    fragments: 0,            // media responses seen (segments and parts)
    fragmentHits: 0,         // ... of which the edge answered from its cache
    parts: 0,                // LL-HLS parts among them
    framesDecoded: 0,        // video frames through the decoder (WebRTC: this session's, from getStats)
    jitterBuffer: null,      // WebRTC: seconds a frame waits in the receiver's jitter buffer
    whepResource: null,      // WebRTC: the session's Location
    whepSessions: 0,         // WebRTC: sessions answered (more than one: it reconnected)
    reconnects: 0,           // WebRTC: offers made again after a session ended or was refused
  };
  window.playerStats = stats;

  for (const link of document.querySelectorAll("#modes a")) {
    link.classList.toggle("current", link.dataset.mode === mode);
  }

  function message(text) { document.getElementById("message").textContent = text; }

  function fail(text) {
    stats.errors.push(text);
    stats.state = "error";
    message(text);
  }

  // RFC 9211: the last member of Cache-Status is the cache nearest the viewer.
  function noteCacheStatus(header, countAsMedia) {
    if (!header) return;
    const nearest = header.split(",").pop().trim();
    stats.cacheStatus = nearest;
    stats.edge = nearest.split(";")[0].trim();
    if (countAsMedia) {
      stats.fragments += 1;
      if (/;\s*hit\b/.test(nearest)) stats.fragmentHits += 1;
    }
  }

  function headerOf(details, name) {
    if (!details) return null;
    if (typeof details.getResponseHeader === "function") return details.getResponseHeader(name);
    if (details.headers && typeof details.headers.get === "function") return details.headers.get(name);
    return null;
  }

  // Until media arrives, the page's own response says which edge this is.
  fetch(location.href, { method: "HEAD", cache: "no-store" })
    .then((r) => { if (!stats.edge) noteCacheStatus(r.headers.get("cache-status"), false); })
    .catch(() => {});

  let started = false;
  let watched = 0, playingSince = null;  // wall time played: performance.now() of the last "playing"
  const stopWatching = () => {
    if (playingSince !== null) watched += (performance.now() - playingSince) / 1000;
    playingSince = null;
  };
  const watchedNow = () => watched + (playingSince === null ? 0 : (performance.now() - playingSince) / 1000);
  video.addEventListener("playing", () => {
    started = true; stats.state = "playing"; message("");
    if (playingSince === null) playingSince = performance.now();
  });
  video.addEventListener("waiting", () => {
    stopWatching();
    if (started) { stats.stalls += 1; stats.state = "stalled"; }
  });
  video.addEventListener("pause", stopWatching);
  video.addEventListener("ended", stopWatching);
  video.addEventListener("error", () => {
    const err = video.error;
    fail(`video error ${err ? err.code : "?"}: ${err && err.message ? err.message : "media failed"}`);
  });

  function playMuted() {
    video.muted = true;  // browsers autoplay muted video only; the controls unmute
    const attempt = video.play();
    if (attempt) attempt.catch((e) => message(`press play (${e.name})`));
  }

  // ---- HLS and LL-HLS ----------------------------------------------------------------------
  function startHls() {
    if (typeof Hls === "undefined") return fail("hls.js did not load (/player/hls.js)");
    if (!Hls.isSupported()) return fail("this browser has no Media Source Extensions");
    const low = mode === "llhls";
    // LL-HLS: after a stall, play up to 1.5x until back at the target latency (hls.js's default
    // of 1 would leave the viewer behind for good)
    // cmcd: every request names this playback session (CMCD-Session: sid="..."), which the
    // edge counts as one viewer however many viewers share an address
    const hls = new Hls({ lowLatencyMode: low, maxLiveSyncPlaybackRate: low ? 1.5 : 1, backBufferLength: 30,
                          cmcd: { useHeaders: true } });
    window.hls = hls;
    hls.on(Hls.Events.FRAG_LOADED, (_, data) => {
      noteCacheStatus(headerOf(data.networkDetails, "cache-status"), true);
      if (data.part) stats.parts += 1;
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      const level = hls.levels[data.level];
      if (!level) return;
      stats.rendition = level.width && level.height ? `${level.width}x${level.height}` : `level ${data.level}`;
      stats.bitrate = level.bitrate || null;
    });
    hls.on(Hls.Events.MANIFEST_PARSED, playMuted);
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      const what = `${data.type}: ${data.details}${data.response ? ` (HTTP ${data.response.code})` : ""}`;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        message(`recovering from ${what}`);
        hls.recoverMediaError();
      } else {
        fail(what);
      }
    });
    hls.loadSource(`/live/${encodeURIComponent(stream)}/master.m3u8`);
    hls.attachMedia(video);
    setInterval(() => {
      stats.latencyHls = hls.latency > 0 ? round(hls.latency) : null;
      const date = hls.playingDate;
      stats.latencyPdt = date && started ? behind((Date.now() - date.getTime()) / 1000) : null;
      stats.latency = stats.latencyPdt ?? stats.latencyHls;
      stats.latencySource = stats.latencyPdt != null ? "program-date-time" : stats.latencyHls != null ? "hls.js" : null;
      stats.bandwidthEstimate = Math.round(hls.bandwidthEstimate) || null;
    }, 250);
  }

  // ---- WebRTC (WHEP) -------------------------------------------------------------------------
  function iceGathered(pc, limitMs) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, limitMs);  // send what we have: the answerer may still find a path
    });
  }

  // A session ends when its stream does (the edge closes it), when the connection fails, or
  // when no media has come for SILENT_MS. Once a session has played, the page offers again by
  // itself, backing off, until the stream is back: a restarted broadcast plays on unattended.
  const CONNECT_MS = 10000;  // from the answer to the first media
  const SILENT_MS = 3000;
  const RETRY_MS = [1000, 2000, 4000, 5000];

  class Refused extends Error {
    constructor(text, retry) { super(text); this.retry = retry; }
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function startWebrtc() {
    for (let failures = 0; ; failures += 1) {
      try {
        await webrtcSession();
        failures = 0;
        message("the stream ended; reconnecting");
      } catch (e) {
        // 404 (not live) and 5xx are worth another try once this page has played the stream
        if (!(e instanceof Refused) || !e.retry || !stats.whepSessions) return fail(`WebRTC: ${e.message || e}`);
        message(`${e.message}; trying again`);
      }
      stats.state = "reconnecting";
      await pause(RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]);
      stats.reconnects += 1;
    }
  }

  // One WHEP session, from the offer until it is over; throws Refused if it never started.
  async function webrtcSession() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    window.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = (event) => {
      media.addTrack(event.track);
      if (video.srcObject !== media) { video.srcObject = media; playMuted(); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, 3000);
    let response, body;
    try {
      response = await fetch(`/whep/${encodeURIComponent(stream)}`, {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
      });
      body = await response.text();
    } catch (e) {
      pc.close();
      throw new Refused(`WHEP offer not answered (${e.message || e})`, true);
    }
    if (response.status !== 201) {
      pc.close();
      throw new Refused(`WHEP offer refused: HTTP ${response.status} ${body.trim().slice(0, 200)}`,
                        response.status === 404 || response.status >= 500);
    }
    noteCacheStatus(response.headers.get("cache-status"), false);
    const resource = response.headers.get("location");
    stats.whepResource = resource;
    const hangUp = () => {
      if (resource) fetch(new URL(resource, location.href), { method: "DELETE", keepalive: true }).catch(() => {});
      pc.close();
    };
    addEventListener("pagehide", hangUp);
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: body });
      stats.whepSessions += 1;
      stats.framesDecoded = 0;
      await sessionOver(pc);
    } finally {
      removeEventListener("pagehide", hangUp);
      hangUp();  // the edge may not know yet (a silent session)
    }
  }

  // Resolves when the session is over; meanwhile fills in what getStats says.
  function sessionOver(pc) {
    return new Promise((resolve) => {
      const opened = performance.now();
      let bytes = 0, quietSince = null, last = null;
      const timer = setInterval(async () => {
        let now = 0;
        for (const s of (await pc.getStats()).values()) {
          if (s.type !== "inbound-rtp") continue;
          now += s.bytesReceived || 0;
          if (s.kind !== "video") continue;
          stats.framesDecoded = s.framesDecoded || 0;
          if (s.frameWidth) stats.rendition = `${s.frameWidth}x${s.frameHeight}`;
          if (last) stats.bitrate = Math.round((8 * (s.bytesReceived - last.bytes) * 1000) / (s.timestamp - last.at));
          last = { bytes: s.bytesReceived, at: s.timestamp };
          if (s.jitterBufferEmittedCount) stats.jitterBuffer = round(s.jitterBufferDelay / s.jitterBufferEmittedCount);
          // The edge's RTCP sender reports map RTP time to its wall clock, so the browser knows
          // the sender's clock time of the frame playing now (in NTP milliseconds). Against this
          // clock, that is how long ago the edge sent it: network, jitter buffer and decoding
          // (the origin's encoding and the edge's demuxing come before and are not in it).
          // Until the first reports arrive the estimate can run ahead of the clock: such a reading
          // is skipped (the last good one stays), never shown as a negative latency, nor as less
          // than the time the frame waited in the jitter buffer alone (0.00 s was seen).
          const sent = s.estimatedPlayoutTimestamp ? behind((Date.now() - (s.estimatedPlayoutTimestamp - NTP_TO_UNIX_MS)) / 1000) : null;
          if (sent != null && sent > 0 && sent >= (stats.jitterBuffer ?? 0)) {
            stats.latency = sent;
            stats.latencySource = "rtcp-sender-report";
          }
        }
        const t = performance.now();
        if (now > bytes) { bytes = now; quietSince = t; }
        const silent = quietSince === null ? t - opened > CONNECT_MS : t - quietSince > SILENT_MS;
        if (silent || pc.connectionState === "failed" || pc.connectionState === "closed") {
          clearInterval(timer);
          resolve();
        }
      }, 500);
    });
  }

  // ---- the panel -----------------------------------------------------------------------------
  const NTP_TO_UNIX_MS = 2208988800000;  // 1900-01-01 to 1970-01-01
  function round(x) { return Math.round(x * 1000) / 1000; }
  // A time behind live below zero means the two clocks disagree (a sender elsewhere): unknown.
  function behind(seconds) { return seconds >= 0 ? round(seconds) : null; }
  const LATENCY_NOTES = {
    "program-date-time": "frame's program date time vs this clock",
    "hls.js": "hls.js: distance to the live edge",
    "rtcp-sender-report": "since the edge sent it, from its RTCP sender reports",
  };
  function kbps(bits) { return bits ? `${Math.round(bits / 1000)} kbit/s` : "-"; }

  function render() {
    stats.currentTime = round(video.currentTime);
    let played = 0;  // seconds actually played (a seek forward adds nothing)
    for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i);
    stats.playedSeconds = round(played);
    stats.watchedSeconds = round(watchedNow());
    if (mode !== "webrtc" && video.getVideoPlaybackQuality) {
      stats.framesDecoded = video.getVideoPlaybackQuality().totalVideoFrames;
    }
    const shown = {
      mode: { llhls: "LL-HLS (hls.js)", hls: "HLS (hls.js)", webrtc: "WebRTC (WHEP)" }[mode]
        || extraModes[mode].label,
      state: `${stats.state}, watched ${stats.watchedSeconds.toFixed(1)} s`,
      latency: (stats.latency == null ? "-" : `${stats.latency.toFixed(2)} s (${LATENCY_NOTES[stats.latencySource]})`)
        + (stats.latencyPdt != null && stats.latencyHls != null ? `; hls.js: ${stats.latencyHls.toFixed(2)} s` : "")
        + (stats.jitterBuffer != null ? `; jitter buffer ${stats.jitterBuffer.toFixed(3)} s` : ""),
      rendition: stats.rendition || "-",
      bitrate: kbps(stats.bitrate) + (stats.bandwidthEstimate ? ` (network ~${kbps(stats.bandwidthEstimate)})` : ""),
      stalls: String(stats.stalls),
      edge: stats.edge || "-",
      cacheStatus: stats.cacheStatus || "-",
      hits: mode === "webrtc" ? `${stats.framesDecoded} frames decoded`
        : `${stats.fragmentHits} of ${stats.fragments} media responses`,
    };
    for (const [key, text] of Object.entries(shown)) {
      const cell = document.querySelector(`[data-stat="${key}"]`);
      if (cell) cell.textContent = text;
    }
  }
  setInterval(render, 500);

  if (!stream) fail("no stream named in the address (/watch/STREAM)");
  else if (mode === "webrtc") startWebrtc();
  else if (extraModes[mode]) {
    const page = { stats, video, stream, fail, message, noteCacheStatus, playMuted, round };
    Promise.resolve(extraModes[mode].start(page)).catch((e) => fail(`${mode}: ${e.message || e}`));
  } else startHls();
})();
