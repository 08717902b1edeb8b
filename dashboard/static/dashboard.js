// Refreshes the fleet table in place (no full reload), keeping the current filters and sort.
(function () {
  "use strict";
  const fleet = document.getElementById("fleet");
  if (!fleet) { return; }
  const seconds = Math.max(2, parseFloat(fleet.dataset.refresh || "10"));
  const query = fleet.dataset.query || "";
  async function refresh() {
    try {
      const response = await fetch("/fragment/rows" + (query ? "?" + query : ""), {credentials: "same-origin"});
      if (!response.ok) { return; }
      const holder = document.createElement("table");
      holder.innerHTML = await response.text();
      const fresh = holder.querySelector("tbody#rows");
      const current = document.getElementById("rows");
      if (fresh && current) { current.replaceWith(fresh); }
    } catch (error) {
      // the dashboard may be restarting; the next tick tries again
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
