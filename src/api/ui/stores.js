// The stores panel: every replicated store with its kind and size, and, on a click, the
// entries of one store, read-only. Read on demand and refreshed with the polls, never
// streamed: a store can hold thousands of keys, and nobody reads them all the time.

import { byId, el } from './dom.js';
import { bytes, cut } from './format.js';

/** Entries drawn at most (the rest are counted, not drawn). */
const MAX_ENTRIES_SHOWN = 200;
/** Longest value text in a cell (the whole value is in its tooltip). */
const VALUE_CHARS = 120;

/** Longest version text shown under a key (versions are opaque, and long). */
const VERSION_CHARS = 28;

/** A value as one line of JSON with a space after each separator, so a narrow cell can wrap it. */
function valueText(value) {
  if (typeof value === 'string') return value;
  return (JSON.stringify(value, null, 1) ?? 'null').replace(/\n\s*/g, ' ');
}

function entryRow(entry) {
  const key = String(entry?.key ?? '');
  const version = String(entry?.version ?? '');
  const text = valueText(entry?.value);
  return el('tr', { 'data-key': key },
    el('td', { class: 'key' },
      el('div', {}, key),
      el('div', { class: 'version', title: version }, cut(version, VERSION_CHARS))),
    el('td', { class: 'value', title: text.length > VALUE_CHARS ? text : null }, cut(text, VALUE_CHARS)));
}

/** Builds the stores panel over `source` (its `stores()` and `entries(name)`). */
export function createStoresPanel(source) {
  const rows = byId('store-rows');
  const status = byId('stores-status');
  const detail = byId('store-detail');
  const title = byId('store-title');
  const entryRows = byId('entry-rows');
  const entriesNote = byId('entries-note');
  let selected = null;
  // Each open() takes a ticket; a slower answer for an earlier click is dropped.
  let ticket = 0;

  byId('store-close').addEventListener('click', () => {
    selected = null;
    ticket += 1;
    detail.hidden = true;
    markSelected();
  });

  function storeRow(store) {
    const name = String(store?.name ?? '');
    const button = el('button', { type: 'button', class: 'link', 'data-store': name }, name);
    button.addEventListener('click', () => open(name));
    return el('tr', { 'data-store': name },
      el('td', {}, button),
      el('td', {}, String(store?.kind ?? '')),
      el('td', { class: 'num' }, String(store?.keys ?? '')),
      el('td', { class: 'num' }, bytes(store?.bytes)));
  }

  function markSelected() {
    for (const row of rows.children) {
      row.classList.toggle('selected', row.dataset.store === selected);
    }
  }

  /** Re-reads the list of stores. */
  async function refresh() {
    let stores;
    try {
      stores = await source.stores();
    } catch (error) {
      status.textContent = `stores unavailable: ${error.message}`;
      return;
    }
    status.textContent = stores.length ? '' : 'no stores';
    rows.replaceChildren(...stores.map(storeRow));
    markSelected();
  }

  /** Shows the entries of store `name`. */
  async function open(name) {
    selected = name;
    ticket += 1;
    const mine = ticket;
    markSelected();
    detail.hidden = false;
    title.textContent = name;
    entriesNote.textContent = 'loading…';
    let doc;
    try {
      doc = await source.entries(name);
    } catch (error) {
      if (mine === ticket) entriesNote.textContent = `cannot read ${name}: ${error.message}`;
      return;
    }
    if (mine !== ticket) return;
    const entries = Array.isArray(doc?.entries) ? doc.entries : [];
    entryRows.replaceChildren(...entries.slice(0, MAX_ENTRIES_SHOWN).map(entryRow));
    const kind = typeof doc?.kind === 'string' ? doc.kind : '';
    const more = entries.length > MAX_ENTRIES_SHOWN ? `, the first ${MAX_ENTRIES_SHOWN} shown` : '';
    entriesNote.textContent = `${kind} · ${entries.length} key${entries.length === 1 ? '' : 's'}${more}`;
  }

  return { refresh };
}
