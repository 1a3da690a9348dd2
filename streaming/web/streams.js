// The list of live streams: the media origin's /streams, read through this page's own host.
"use strict";
(() => {
  const body = document.querySelector("#streams tbody");
  window.streamList = null;  // the last /streams answer, for tests

  function cell(row, text) {
    const td = row.insertCell();
    td.textContent = text;
    return td;
  }

  function render(streams) {
    body.replaceChildren();
    if (!streams.length) {
      cell(body.insertRow(), "no streams configured").colSpan = 6;
      return;
    }
    for (const s of streams) {
      const row = body.insertRow();
      row.dataset.stream = s.name;
      cell(row, s.name);
      cell(row, s.state);
      cell(row, s.protocol || s.source || "-");
      cell(row, (s.renditions || []).join(", ") || "-");
      cell(row, s.bitrate ? `${Math.round(s.bitrate / 1000)} kbit/s` : "-");
      const links = row.insertCell();
      for (const [label, mode] of [["LL-HLS", "llhls"], ["HLS", "hls"], ["WebRTC", "webrtc"], ["DASH", "dash"]]) {
        const a = document.createElement("a");
        a.href = `/watch/${encodeURIComponent(s.name)}${mode === "llhls" ? "" : `?mode=${mode}`}`;
        a.textContent = label;
        links.append(a);
      }
    }
  }

  async function refresh() {
    try {
      const response = await fetch("/streams", { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const answer = await response.json();
      window.streamList = answer.streams;
      render(answer.streams);
      document.getElementById("message").textContent = "";
    } catch (e) {
      document.getElementById("message").textContent = `could not read /streams: ${e.message || e}`;
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
