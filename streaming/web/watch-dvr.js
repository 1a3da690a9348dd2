// Start-over on the watch page: a seek bar over what the stream keeps (the playlist's window:
// `dvr_seconds` when the media origin keeps a longer one), a "Start over" and a "Live" button.
// Works with whatever plays into the <video> (hls.js, dash.js): it only reads video.seekable.
// What it shows is also in window.playerStats.dvr: { window, behind } in seconds.
"use strict";
(() => {
  const video = document.getElementById("video");
  if (!video || new URLSearchParams(location.search).get("mode") === "webrtc") return;
  const box = document.createElement("div");
  box.id = "dvr";
  box.innerHTML = '<button type="button" data-dvr="start">&#x23EE; Start over</button>'
    + '<input type="range" min="0" max="0" step="0.1" value="0" aria-label="position in the stream">'
    + '<button type="button" data-dvr="live">Live</button> <span data-dvr="behind"></span>';
  video.after(box);
  const bar = box.querySelector("input");
  const shown = box.querySelector('[data-dvr="behind"]');
  const state = { window: 0, behind: 0 };
  let dragging = false;

  function range() {
    const s = video.seekable;
    return s.length ? { start: s.start(0), end: s.end(s.length - 1) } : null;
  }
  function liveEdge(r) {
    const sync = window.hls && window.hls.liveSyncPosition;  // hls.js: its target behind live
    return sync && sync <= r.end ? sync : Math.max(r.start, r.end - 3);
  }
  const START_MARGIN = 3;  // seconds
  function seek(to) {
    const r = range();
    if (!r) return;
    // a few seconds after the window's start: the oldest segments slide out while we load them
    // (with 1 s segments on a loaded machine, 1 s was not enough: the player lost the position
    // and went back to live)
    video.currentTime = Math.min(Math.max(to, r.start + START_MARGIN), r.end);
    if (video.paused) video.play().catch(() => {});
  }

  box.querySelector('[data-dvr="start"]').addEventListener("click", () => { const r = range(); if (r) seek(r.start); });
  box.querySelector('[data-dvr="live"]').addEventListener("click", () => { const r = range(); if (r) seek(liveEdge(r)); });
  bar.addEventListener("input", () => { dragging = true; });
  bar.addEventListener("change", () => { dragging = false; const r = range(); if (r) seek(r.start + Number(bar.value)); });

  setInterval(() => {
    const r = range();
    if (!r) return;
    state.window = Math.round((r.end - r.start) * 10) / 10;
    state.behind = Math.max(0, Math.round((r.end - video.currentTime) * 10) / 10);
    if (window.playerStats) window.playerStats.dvr = { ...state };
    if (!dragging) {
      bar.max = String(state.window);
      bar.value = String(video.currentTime - r.start);
    }
    shown.textContent = `${state.behind.toFixed(1)} s behind the newest of ${state.window.toFixed(0)} s kept`;
  }, 500);
})();
