// The timeline: the last changes this page saw on the event stream, newest first. Events carry
// no time of their own, so each is stamped with the browser's clock when it arrived.

import { byId, el } from './dom.js';
import { clock } from './format.js';

function stateWord(state, fallback) {
  return el('span', { class: `state-pill state-${state ?? 'none'}` }, state ?? fallback);
}

function entryItem(entry) {
  return el('li', { 'data-member': entry.member, 'data-state': entry.state ?? 'REMOVED' },
    el('time', { datetime: new Date(entry.at).toISOString() }, clock(entry.at)),
    el('span', { class: 'member-name' }, entry.member),
    el('span', { class: 'transition' },
      stateWord(entry.previous, 'new'), el('span', { class: 'arrow' }, '→'),
      stateWord(entry.state, 'removed')),
    el('span', { class: 'reason' }, entry.reason));
}

/** Builds the timeline view over `cluster.timeline`. */
export function createTimeline(cluster) {
  const list = byId('timeline');
  const empty = byId('timeline-empty');
  let drawn = -1;

  /** Redraws the list if the timeline changed since the last draw. */
  function render() {
    if (drawn === cluster.timelineVersion) return;
    drawn = cluster.timelineVersion;
    list.replaceChildren(...cluster.timeline.map(entryItem));
    empty.hidden = cluster.timeline.length > 0;
  }

  return { render };
}
