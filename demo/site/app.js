// Shows how the edge served this page, read from the response's Cache-Status header.
fetch(location.href, { method: "HEAD", cache: "no-store" })
  .then((r) => {
    const status = r.headers.get("cache-status") || "(no Cache-Status header)";
    document.getElementById("status").textContent = `${status} · Age ${r.headers.get("age") ?? "-"}`;
  })
  .catch((e) => { document.getElementById("status").textContent = `could not tell: ${e}`; });
