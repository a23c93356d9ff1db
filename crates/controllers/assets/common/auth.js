// Credentials for the pages of ipfs-stream. A bearer token is kept in this tab's sessionStorage:
// taken from the page's `#token=…` fragment (never sent to the server, removed from the address
// bar at once) or typed in when the server asks for one. Fetches carry it; WebSocket upgrades,
// which cannot carry headers, carry a single-use ticket bought with it instead.
"use strict";

const IpfsStreamAuth = (() => {
  const KEY = "ipfs-stream-token";
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token").trim());
    history.replaceState(null, "", location.pathname + location.search);
  }

  const token = () => sessionStorage.getItem(KEY);

  // Asks for a token; false when the user declines.
  function ask(reason) {
    const entered = window.prompt(`${reason}\nPaste a token of this server (ipfs-stream token create --scope …):`);
    if (!entered) return false;
    sessionStorage.setItem(KEY, entered.trim());
    return true;
  }

  // fetch() with the token; on 401 or 403 asks for another token once and tries again.
  async function authorizedFetch(url, options = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const headers = new Headers(options.headers || {});
      if (token()) headers.set("Authorization", `Bearer ${token()}`);
      const response = await fetch(url, { ...options, headers });
      if ((response.status !== 401 && response.status !== 403) || attempt > 0) return response;
      const body = await response.clone().json().catch(() => ({}));
      if (!ask(body.message || `${url} needs a token.`)) return response;
    }
  }

  // The ws(s):// URL of `path`, with a ticket when a token is at hand.
  async function socketUrl(path) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let url = `${scheme}://${location.host}${path}`;
    if (token()) {
      const response = await authorizedFetch("/api/v1/auth/tickets", { method: "POST" });
      if (response.ok) {
        const { ticket } = await response.json();
        url += `${path.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`;
      }
    }
    return url;
  }

  return { fetch: authorizedFetch, socketUrl, token, ask };
})();
