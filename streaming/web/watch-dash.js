// ?mode=dash on the watch page: dash.js plays /live/STREAM/manifest.mpd, the media origin's
// dynamic MPD over the same CMAF segments as HLS (a video and an audio AdaptationSet, each
// segment cut to one track). watch.js calls start(page) with what the panel shares.
"use strict";
(() => {
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`${src} did not load`));
      document.head.appendChild(script);
    });
  }

  function headerOf(response, name) {
    const headers = response && response.headers;
    if (!headers) return null;
    if (typeof headers.get === "function") return headers.get(name);
    for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
    return null;
  }

  async function start(page) {
    const { stats, video, stream } = page;
    // only this mode pays for dash.js (800 KB)
    if (typeof dashjs === "undefined") await loadScript("/player/dash.js");
    if (!dashjs.supportsMediaSource()) return page.fail("this browser has no Media Source Extensions");
    const player = dashjs.MediaPlayer().create();
    window.dashPlayer = player;
    player.updateSettings({
      streaming: {
        delay: { liveDelay: 3 },  // seconds behind live: the MPD's three segments
        liveCatchup: { enabled: true, maxDrift: 6, playbackRate: { min: -0.2, max: 0.5 } },
      },
    });
    player.addResponseInterceptor((response) => {
      const type = response.request && response.request.customData && response.request.customData.request
        ? response.request.customData.request.type : "";
      page.noteCacheStatus(headerOf(response, "cache-status"), type === "MediaSegment");
      return Promise.resolve(response);
    });
    const events = dashjs.MediaPlayer.events;
    player.on(events.ERROR, (event) => {
      const error = event.error || {};
      page.fail(`dash.js error ${error.code ?? "?"}: ${error.message || "playback failed"}`);
    });
    player.on(events.QUALITY_CHANGE_RENDERED, (event) => {
      if (event.mediaType !== "video") return;
      const rep = player.getCurrentRepresentationForType("video");
      if (!rep) return;
      stats.rendition = rep.width && rep.height ? `${rep.width}x${rep.height}` : rep.id;
      stats.bitrate = rep.bandwidth || null;
    });
    player.on(events.STREAM_INITIALIZED, page.playMuted);
    player.initialize(video, `/live/${encodeURIComponent(stream)}/manifest.mpd`, true);
    setInterval(() => {
      const latency = player.getCurrentLiveLatency();
      stats.latency = latency > 0 ? page.round(latency) : null;
    }, 250);
  }

  window.playerModes = { ...(window.playerModes || {}), dash: { label: "DASH (dash.js)", start } };
})();
