// The watch page: plays /live/STREAM from this page's own host (an edge of the streaming
// distribution) with hls.js (LL-HLS or HLS) or WebRTC (WHEP), and shows what a viewer notices.
// Everything shown is also in window.playerStats, which the browser tests read.
"use strict";
(() => {
  const MODES = ["llhls", "hls", "webrtc"];
  const stream = decodeURIComponent(location.pathname.split("/")[2] || "");
  const asked = new URLSearchParams(location.search).get("mode");
  const mode = MODES.includes(asked) ? asked : "llhls";
  const video = document.getElementById("video");
  const stats = {
    stream, mode,
    state: "loading",        // loading | playing | stalled | reconnecting | error
    currentTime: 0,          // of the <video>, seconds
    playedSeconds: 0,        // media time actually played (video.played), seconds
    latency: null,           // seconds behind live: program date time vs this clock, else hls.js's estimate
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
  video.addEventListener("playing", () => { started = true; stats.state = "playing"; message(""); });
  video.addEventListener("waiting", () => { if (started) { stats.stalls += 1; stats.state = "stalled"; } });
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
    const hls = new Hls({ lowLatencyMode: low, maxLiveSyncPlaybackRate: low ? 1.5 : 1, backBufferLength: 30 });
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
      stats.latencyPdt = date && started ? round((Date.now() - date.getTime()) / 1000) : null;
      stats.latency = stats.latencyPdt ?? stats.latencyHls;
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
          // what the receiver adds; the sender's and the network's share are not visible here
          if (s.jitterBufferEmittedCount) stats.latency = round(s.jitterBufferDelay / s.jitterBufferEmittedCount);
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
  function round(x) { return Math.round(x * 1000) / 1000; }
  function kbps(bits) { return bits ? `${Math.round(bits / 1000)} kbit/s` : "-"; }

  function render() {
    stats.currentTime = round(video.currentTime);
    let played = 0;  // seconds actually played (a seek forward adds nothing)
    for (let i = 0; i < video.played.length; i++) played += video.played.end(i) - video.played.start(i);
    stats.playedSeconds = round(played);
    if (mode !== "webrtc" && video.getVideoPlaybackQuality) {
      stats.framesDecoded = video.getVideoPlaybackQuality().totalVideoFrames;
    }
    const shown = {
      mode: { llhls: "LL-HLS (hls.js)", hls: "HLS (hls.js)", webrtc: "WebRTC (WHEP)" }[mode],
      state: `${stats.state}, ${stats.currentTime.toFixed(1)} s played`,
      latency: stats.latency == null ? "-" : `${stats.latency.toFixed(2)} s` + (mode === "webrtc"
        ? " (receiver jitter buffer)"
        : stats.latencyPdt != null && stats.latencyHls != null ? ` (hls.js: ${stats.latencyHls.toFixed(2)} s)` : ""),
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
  else startHls();
})();
