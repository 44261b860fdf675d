// The operator console's script: asks for the token (when the console has one) and keeps
// it in sessionStorage for this tab, reads the JSON API (/api/...) and fills the page.
// Filters live in the URL, so a filtered view can be bookmarked or shared. Lists refresh
// themselves by short polling. Plain JavaScript, no build step, nothing from elsewhere.
"use strict";

(() => {
  const TOKEN_KEY = "relay-console-token";
  const POLL_MS = 2000;
  const body = document.body;
  const needsToken = body.dataset.tokenRequired === "yes";
  const statusLine = document.getElementById("status");

  // --- the token and the API ---------------------------------------------------------------

  let asking = null; // one prompt, however many requests are waiting for it

  function askToken(message) {
    if (asking) return asking;
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const input = document.getElementById("token");
    document.getElementById("token-error").textContent = message || "";
    asking = new Promise((resolve) => {
      form.onsubmit = (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        sessionStorage.setItem(TOKEN_KEY, value);
        input.value = "";
        dialog.close();
        asking = null;
        resolve();
      };
      dialog.addEventListener("cancel", (event) => event.preventDefault()); // it is needed
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  async function api(path, options = {}) {
    for (;;) {
      if (needsToken && !sessionStorage.getItem(TOKEN_KEY)) await askToken();
      const headers = { Accept: "application/json", ...(options.headers || {}) };
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = `Bearer ${token}`;
      const response = await fetch(path, { ...options, headers, credentials: "omit" });
      if (response.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        await askToken("That token was not accepted. Try again.");
        continue;
      }
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
      return data;
    }
  }

  function post(path, data) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
    });
  }

  function say(text, isError = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("error", isError);
  }

  // --- building the page -------------------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 90) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
    return `${(seconds / 86400).toFixed(1)} d`;
  }

  function deliveryState(delivery) {
    const parts = [el("span", { className: `state ${delivery.state}` }, delivery.state)];
    if (delivery.state === "pending") {
      const wait = delivery.next_at - Date.now() / 1000;
      parts.push(wait > 1 ? ` next try in ${duration(wait)}` : " due now");
      if (delivery.attempts) parts.push(` (${delivery.attempts} failed: ${delivery.reason})`);
    } else if (delivery.state === "dead") {
      parts.push(` ${delivery.reason || ""}`);
    }
    return parts;
  }

  function deliveriesList(deliveries) {
    if (!deliveries.length) return el("span", { className: "muted" }, "stored, not routed");
    return el(
      "ul",
      { className: "deliveries" },
      deliveries.map((d) =>
        el("li", { "data-destination": d.destination, "data-state": d.state },
          el("span", { className: "destination" }, d.destination), ": ", deliveryState(d)),
      ),
    );
  }

  function whoAndWhere(item) {
    const who = item.sender || item.customer;
    const where = [item.channel, item.medium].filter(Boolean).join(" · ");
    return [
      who ? el("span", { className: "who" }, who) : null,
      where ? el("span", { className: "where" }, where) : null,
      item.text ? el("span", { className: "text" }, item.text) : null,
    ];
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // --- filters in the URL ------------------------------------------------------------------

  function readFilters(form) {
    const params = new URLSearchParams(location.search);
    for (const field of form.elements) {
      if (field.name) field.value = params.get(field.name) || "";
    }
    return params;
  }

  function filterQuery(form) {
    const params = new URLSearchParams();
    for (const field of form.elements) {
      if (field.name && field.value.trim()) params.set(field.name, field.value.trim());
    }
    return params;
  }

  function wireFilters(form, reload) {
    readFilters(form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = filterQuery(form).toString();
      history.pushState(null, "", query ? `?${query}` : location.pathname);
      reload();
    });
    document.getElementById("clear").addEventListener("click", () => {
      history.pushState(null, "", location.pathname);
      readFilters(form);
      reload();
    });
    window.addEventListener("popstate", () => {
      readFilters(form);
      reload();
    });
    api("/api/lanes")
      .then((data) => {
        document.getElementById("destination-names").replaceChildren(
          ...data.lanes.map((lane) => el("option", { value: lane.destination })),
        );
      })
      .catch(() => {});
  }

  // A list that shows its newest page, polls it, and can load older pages below it.
  function pagedList({ path, key, form, tbody, row, more, empty }) {
    let shown = 0;
    let older = []; // rows of pages loaded with "older"
    let next = null;
    let boundary = null; // the first older page's `before`: the newest page reaches down to it
    let last = "";

    async function refresh() {
      const query = filterQuery(form);
      // With older pages below, the newest page must reach them whatever arrived meanwhile
      // (else the rows it no longer holds go missing between the two).
      query.set("limit", String(older.length ? 200 : Math.max(50, shown - older.length)));
      const data = await api(`${path}?${query}`);
      const text = JSON.stringify(data);
      if (text === last) return;
      last = text;
      let items = data[key];
      const end = items.length ? items[items.length - 1].id : null;
      if (older.length && data.next !== null && end > boundary) {
        older = []; // more arrived than a page holds: start again from the newest
        boundary = null;
      }
      if (older.length) items = items.filter((item) => item.id >= boundary);
      if (!older.length) next = data.next;
      replaceRows(tbody, [...items.map(row), ...older]);
      shown = items.length + older.length;
      empty.hidden = shown > 0;
      more.hidden = next === null;
    }

    async function reload() {
      older = [];
      boundary = null;
      last = "";
      shown = 0;
      await refresh().catch((error) => say(error.message, true));
    }

    more.addEventListener("click", async () => {
      const query = filterQuery(form);
      query.set("before", String(next));
      const data = await api(`${path}?${query}`);
      const rows = data[key].map(row);
      if (!older.length) boundary = next;
      older.push(...rows);
      tbody.append(...rows);
      shown += rows.length;
      next = data.next;
      more.hidden = next === null;
    });
    return { refresh, reload };
  }

  function poll(refresh) {
    const tick = async () => {
      try {
        await refresh();
        if (statusLine.classList.contains("error")) say("");
      } catch (error) {
        say(`Could not refresh: ${error.message}`, true);
      }
      setTimeout(tick, POLL_MS);
    };
    tick();
  }

  // --- pages -------------------------------------------------------------------------------

  function eventsPage() {
    const form = document.getElementById("filters");
    const list = pagedList({
      path: "/api/events",
      key: "events",
      form,
      tbody: document.querySelector("#events tbody"),
      more: document.getElementById("more"),
      empty: document.getElementById("empty"),
      row: (item) =>
        el("tr", { "data-event-id": item.id },
          el("td", { "data-label": "Received" },
            el("a", { href: `/events/${item.id}` }, when(item.received_at))),
          el("td", { "data-label": "Event" }, item.event || "(no name)",
            item.conversation ? el("span", { className: "conversation" }, item.conversation) : null),
          el("td", { "data-label": "Who and where" }, whoAndWhere(item)),
          el("td", { "data-label": "Routes" }, item.routes.join(", ") || "–"),
          el("td", { "data-label": "Deliveries" }, deliveriesList(item.deliveries))),
    });
    wireFilters(form, list.reload);
    poll(list.refresh);
  }

  function eventPage() {
    const id = location.pathname.split("/").pop();
    const pretty = (value) => JSON.stringify(value, null, 2);
    let last = "";

    async function refresh() {
      const data = await api(`/api/events/${id}`);
      const text = JSON.stringify(data);
      if (text === last) return;
      last = text;
      document.title = `Event ${data.id} · relay console`;
      document.getElementById("title").textContent = `Event ${data.id}: ${data.event || "(no name)"}`;
      const facts = [
        ["Received", when(data.received_at)],
        ["Conversation", data.conversation || "–"],
        ["From", data.sender || "–"],
        ["Customer", data.customer || "–"],
        ["Channel", [data.channel, data.medium].filter(Boolean).join(" · ") || "–"],
      ];
      document.getElementById("summary").replaceChildren(
        ...facts.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]),
      );
      document.getElementById("deliveries").replaceChildren(
        ...(data.deliveries.length
          ? data.deliveries.map(deliverySection)
          : [el("p", { className: "muted" }, "No destination: the event is stored and not delivered.")]),
      );
      const decision = data.decision;
      document.getElementById("decision").replaceChildren(
        el("p", {}, "Routes: ", decision.routes.join(", ") || "(none matched)"),
        el("p", {}, "Destinations: ", decision.destinations.join(", ") || "(none)"),
        el("p", { className: "muted" }, `(${decision.note})`),
      );
      document.getElementById("preview").replaceChildren(
        ...Object.entries(data.preview).map(([name, calls]) =>
          el("details", { open: true },
            el("summary", {}, name),
            el("pre", { className: "code", tabindex: "0" }, pretty(calls)))),
      );
      document.getElementById("body").textContent =
        typeof data.body === "string" ? data.body : pretty(data.body);
    }

    function deliverySection(delivery) {
      const attempts = delivery.attempts_made;
      return el("article", { className: "delivery", "data-destination": delivery.destination },
        el("h3", {}, delivery.destination, ": ", deliveryState(delivery)),
        delivery.detail ? el("p", { className: "detail" }, delivery.detail) : null,
        delivery.state === "dead" ? retryButton(delivery.id, refresh) : null,
        attempts.length
          ? el("table", { className: "attempts" },
              el("thead", {}, el("tr", {},
                ["Time", "Outcome", "Reason", "Detail", "Took"].map((h) => el("th", { scope: "col" }, h)))),
              el("tbody", {}, attempts.map((a) =>
                el("tr", {},
                  el("td", { "data-label": "Time" }, when(a.at)),
                  el("td", { "data-label": "Outcome" }, el("span", { className: `state ${a.outcome}` }, a.outcome)),
                  el("td", { "data-label": "Reason" }, a.reason || "–"),
                  el("td", { "data-label": "Detail" }, a.detail || ""),
                  el("td", { "data-label": "Took" }, duration(a.duration))))))
          : el("p", { className: "muted" }, "No attempt on record."));
    }

    poll(refresh);
  }

  function retryButton(id, after) {
    return el("button", {
      type: "button",
      className: "retry",
      "data-delivery-id": id,
      "aria-label": `Retry delivery ${id}`,
      onclick: async (event) => {
        event.currentTarget.disabled = true;
        try {
          const data = await post("/api/dead/retry", { ids: [id] });
          say(data.retried ? `Delivery ${id} is back in line.` : `Delivery ${id} was not dead any more.`);
        } catch (error) {
          say(`Retry failed: ${error.message}`, true);
        }
        await after();
      },
    }, "Retry");
  }

  function lanesPage() {
    const tbody = document.querySelector("#lanes tbody");
    let last = "";
    poll(async () => {
      const data = await api("/api/lanes");
      const text = JSON.stringify(data);
      if (text === last) return;
      last = text;
      replaceRows(tbody, data.lanes.map((lane) =>
        el("tr", { "data-destination": lane.destination },
          el("th", { scope: "row", "data-label": "Destination" },
            el("a", { href: `/?destination=${encodeURIComponent(lane.destination)}` }, lane.destination),
            lane.type ? el("span", { className: "muted" }, ` ${lane.type}`) : null),
          el("td", { "data-label": "Pending" }, lane.pending),
          el("td", { "data-label": "Oldest pending" }, duration(lane.oldest_age)),
          el("td", { "data-label": "Paused" }, lane.paused
            ? [el("span", { className: "state dead" }, `${duration(lane.paused.seconds)} more`), ` ${lane.paused.reason}`]
            : "no"),
          el("td", { "data-label": "Sent, last hour" }, lane.sent_last_hour),
          el("td", { "data-label": "Dead" }, lane.dead
            ? el("a", { href: `/dead?destination=${encodeURIComponent(lane.destination)}` }, lane.dead)
            : "0"),
          el("td", { "data-label": "Lane" }, lane.running ? "running" : lane.enabled ? "stopped" : "off"))));
    });
  }

  function deadPage() {
    const form = document.getElementById("filters");
    const list = pagedList({
      path: "/api/dead",
      key: "dead",
      form,
      tbody: document.querySelector("#dead tbody"),
      more: document.getElementById("more"),
      empty: document.getElementById("empty"),
      row: (item) =>
        el("tr", { "data-delivery-id": item.id },
          el("td", { "data-label": "Died" }, when(item.finished_at)),
          el("td", { "data-label": "Destination" }, item.destination),
          el("td", { "data-label": "Event" },
            el("a", { href: `/events/${item.event_id}` }, `${item.event || "(no name)"} #${item.event_id}`),
            item.conversation ? el("span", { className: "conversation" }, item.conversation) : null),
          el("td", { "data-label": "Reason" }, el("strong", {}, item.reason || ""),
            item.detail && item.detail !== item.reason
              ? el("span", { className: "detail" }, item.detail)
              : null),
          el("td", { "data-label": "Attempts" }, item.attempts),
          el("td", {}, retryButton(item.id, list.reload))),
    });
    wireFilters(form, list.reload);
    document.getElementById("retry-all").addEventListener("click", async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        const filters = Object.fromEntries(filterQuery(form));
        const data = await post("/api/dead/retry", { all: true, ...filters });
        say(`${data.retried} dead deliveries are back in line.`);
      } catch (error) {
        say(`Retry failed: ${error.message}`, true);
      }
      button.disabled = false;
      await list.reload();
    });
    poll(list.refresh);
  }

  const pages = { events: eventsPage, event: eventPage, lanes: lanesPage, dead: deadPage };
  pages[body.dataset.page]?.();
})();
