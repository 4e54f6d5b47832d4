// The live source: the event stream of the node serving the page for membership changes, and
// polls of its status (ages, vitals), leader and stores. Same origin only: the page's CSP
// allows no other.

/** How often status, leader and stores are re-read (vitals and ages change without events). */
export const POLL_MS = 5000;
/** A burst of membership events costs one leader read, this long after the last of them. */
const LEADER_DEBOUNCE_MS = 250;
/** Wait before opening a new stream after the browser gave up on one. */
const REOPEN_MS = 3000;
/** A read that takes longer is abandoned (the next poll tries again). */
const FETCH_TIMEOUT_MS = 4000;

/** GETs `path` as JSON; throws with the API's `error` text on a non-2xx answer. */
async function getJson(path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(path, { signal: abort.signal, headers: { Accept: 'application/json' } });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body?.error ?? `HTTP ${response.status}`);
    return body;
  } finally {
    clearTimeout(timer);
  }
}

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    console.warn('meshd: ignored an event that is not JSON', event.type);
    return null;
  }
}

/** The source of a real node: `start` wires the cluster to it, `stores`/`entries` read stores. */
export function liveSource() {
  return {
    start,
    stores: async () => {
      const body = await getJson('/ha/stores');
      return Array.isArray(body?.stores) ? body.stores : [];
    },
    entries: (name) => getJson(`/ha/stores/${encodeURIComponent(name)}`),
  };
}

/**
 * Keeps `cluster` up to date; `hooks.changed()` after every change, `hooks.connection(up)`
 * when the stream comes up (a snapshot arrived) or goes down, `hooks.poll()` on each poll tick.
 */
function start(cluster, hooks) {
  // True between a snapshot and the next stream error: while true, states come only from events.
  let streaming = false;
  let polling = false;
  let leaderTimer = null;

  async function pollStatus() {
    if (polling) return;
    polling = true;
    try {
      cluster.applyStatus(await getJson('/ha/status'), Date.now(), !streaming);
      hooks.changed();
    } catch (error) {
      console.warn('meshd: status poll failed', error.message);
    } finally {
      polling = false;
    }
  }

  async function fetchLeader() {
    try {
      cluster.setLeader(await getJson('/ha/leader'));
      hooks.changed();
    } catch (error) {
      console.warn('meshd: leader read failed', error.message);
    }
  }

  function leaderSoon() {
    clearTimeout(leaderTimer);
    leaderTimer = setTimeout(fetchLeader, LEADER_DEBOUNCE_MS);
  }

  function onSnapshot(event) {
    const doc = parse(event);
    if (!doc) return;
    cluster.applySnapshot(doc, Date.now());
    streaming = true;
    hooks.connection(true);
    hooks.changed();
    // The snapshot has no vitals, and the leader may have changed while the stream was down.
    pollStatus();
    leaderSoon();
  }

  function openStream() {
    const stream = new EventSource('/ha/events');
    stream.addEventListener('snapshot', onSnapshot);
    stream.addEventListener('resync', onSnapshot);
    // A change of membership: applied, drawn, and the leader re-read shortly.
    const follow = (name, apply) => stream.addEventListener(name, (event) => {
      const data = parse(event);
      if (!data) return;
      apply(data, Date.now());
      hooks.changed();
      leaderSoon();
    });
    follow('membership', (change, now) => cluster.applyMembership(change, now));
    follow('reaped', (gone, now) => cluster.applyReaped(gone, now));
    stream.onerror = () => {
      streaming = false;
      hooks.connection(false);
      // The browser retries by itself unless the answer was not an event stream (CLOSED).
      if (stream.readyState === EventSource.CLOSED) setTimeout(openStream, REOPEN_MS);
    };
  }

  openStream();
  pollStatus();
  fetchLeader();
  setInterval(() => {
    pollStatus();
    fetchLeader();
    hooks.poll();
  }, POLL_MS);
}
