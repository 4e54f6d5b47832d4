// The cluster page: wires a source (a live node, or made-up members for measuring) to the
// model and the views, and redraws at most once per frame however many events arrive.

import { byId } from './dom.js';
import { liveSource, POLL_MS } from './live.js';
import { Cluster } from './model.js';
import { createStoresPanel } from './stores.js';
import { createSummary } from './summary.js';
import {
  syntheticChanges, syntheticCount, syntheticLeader, syntheticStatus, syntheticStores,
} from './synthetic.js';
import { createMemberTable, refreshAges } from './table.js';
import { createTimeline } from './timeline.js';

/** Ages on screen are re-read this often (the rows themselves are not redrawn). */
const AGE_TICK_MS = 1000;

const cluster = new Cluster();
const table = createMemberTable(cluster, invalidate);
const summary = createSummary(cluster, table.filterState);
const timeline = createTimeline(cluster);

function renderAll() {
  const now = Date.now();
  summary.render();
  table.render(now);
  timeline.render();
}

// One redraw per frame: a burst of events (a rack going down) costs one redraw, not hundreds.
let frameRequested = false;
function invalidate() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    renderAll();
  });
}

/** Calls `done` once the current frame has been laid out and painted. */
function afterPaint(done) {
  // A rAF callback runs before the frame's style, layout and paint; a task queued from it runs
  // after them, so the time taken then covers everything the first draw cost.
  requestAnimationFrame(() => setTimeout(done, 0));
}

function showConnection(up) {
  byId('reconnecting').hidden = up;
  const pill = byId('stream-state');
  pill.textContent = up ? 'live' : 'offline';
  pill.className = up ? 'pill pill-ok' : 'pill pill-bad';
}

function startLive() {
  const source = liveSource();
  const stores = createStoresPanel(source);
  source.start(cluster, { changed: invalidate, connection: showConnection, poll: stores.refresh });
  stores.refresh();
}

/** Draws `count` made-up members and records the first draw's time in `window.meshdRenderMs`. */
function startSynthetic(count) {
  // Made up before the clock starts: only the model, the views and the browser's work count.
  const status = syntheticStatus(count);
  const started = performance.now();
  cluster.applySnapshot(status, Date.now());
  for (const change of syntheticChanges(status)) cluster.applyMembership(change, Date.now());
  cluster.setLeader(syntheticLeader(status));
  renderAll();
  afterPaint(() => {
    const ms = Math.round((performance.now() - started) * 10) / 10;
    window.meshdRenderMs = ms;
    const banner = byId('synthetic-banner');
    banner.textContent = `synthetic: ${count} made-up members · first draw ${ms} ms`;
    banner.hidden = false;
  });
  const pill = byId('stream-state');
  pill.textContent = 'synthetic';
  pill.className = 'pill pill-info';
  createStoresPanel(syntheticStores(status)).refresh();
}

const synthetic = syntheticCount(new URLSearchParams(location.search).get('synthetic'));
if (synthetic) startSynthetic(synthetic);
else startLive();
setInterval(() => refreshAges(document, Date.now()), AGE_TICK_MS);
// Stated here so the poll period has one home: the views assume ages at most this stale.
byId('poll-period').textContent = `${POLL_MS / 1000} s`;
