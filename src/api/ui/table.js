// The member table: filters, sort, grouping and paging over the cluster's members. Only one
// page of rows is in the DOM at a time, so 1,000 members cost about what 100 do to draw;
// filtering and sorting 1,000 records in JS takes well under a millisecond.

import { byId, el, setOptions } from './dom.js';
import { ago, bytes, cut, duration, loadText, percent } from './format.js';
import { STATES, STATE_RANK } from './model.js';

/** Rows per page. */
export const PAGE_SIZE = 100;

/** Longest load text shown in a cell (the whole object is in its tooltip). */
const LOAD_CHARS = 40;

// "node-2" before "node-10": names and zones usually carry numbers.
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

/**
 * The columns, in order. `value` is what the column sorts by (null sorts last either way),
 * `cell` draws it; ages sort by their reading so that ascending means "most recent first".
 */
const COLUMNS = [
  { key: 'name', label: 'Member', value: (m) => m.name, cell: nameCell },
  { key: 'state', label: 'State', value: (m) => STATE_RANK[m.state], cell: stateCell },
  { key: 'region', label: 'Region', value: (m) => m.region, cell: (m) => textCell(m.region) },
  { key: 'zone', label: 'Zone', value: (m) => m.zone, cell: (m) => textCell(m.zone) },
  {
    key: 'incarnation', label: 'Incarnation', numeric: true,
    value: (m) => m.incarnation, cell: (m) => numberCell(String(m.incarnation)),
  },
  {
    key: 'since', label: 'In state', numeric: true,
    value: (m) => -m.sinceAt, cell: (m, now) => ageCell(m.sinceAt, now, 'duration'),
  },
  {
    key: 'heard', label: 'Last heard', numeric: true,
    value: (m) => (m.heardAt === null ? null : -m.heardAt),
    cell: (m, now) => ageCell(m.heardAt, now, 'ago'),
  },
  {
    key: 'health', label: 'Health', numeric: true,
    value: (m) => vital(m, 'health_score'), cell: healthCell,
  },
  {
    key: 'rss', label: 'RSS', numeric: true,
    value: (m) => vital(m, 'rss_bytes'), cell: (m) => numberCell(bytes(vital(m, 'rss_bytes'))),
  },
  {
    key: 'cpu', label: 'CPU', numeric: true,
    value: (m) => vital(m, 'cpu_share'), cell: (m) => numberCell(percent(vital(m, 'cpu_share'))),
  },
  { key: 'load', label: 'Gateway load', value: loadValue, cell: loadCell },
];

/** How rows can be grouped: the label of a row's group. */
const GROUPS = {
  region: (m) => m.region || '(no region)',
  zone: (m) => `${m.region || '(no region)'} / ${m.zone || '(no zone)'}`,
};

function vital(member, field) {
  const value = member.vitals?.[field];
  return Number.isFinite(value) ? value : null;
}

function loadValue(member) {
  const load = member.vitals?.load;
  return load && typeof load === 'object' ? loadText(load) : null;
}

function textCell(text) {
  return el('td', {}, text || '—');
}

function numberCell(text, extraClass = '') {
  return el('td', { class: `num ${extraClass}`.trim() }, text);
}

/** An age cell: `data-at` lets the once-a-second tick update it without a redraw. */
function ageCell(at, now, style) {
  const text = style === 'ago' ? ago(at, now) : duration(now - at);
  return el('td', { class: 'num age', 'data-at': at, 'data-style': style }, at === null ? '—' : text);
}

function nameCell(member, now, leader) {
  const tags = Object.entries(member.tags).map(([k, v]) => `${k}=${v}`).join(' ');
  return el('td', { class: 'name' },
    el('div', { class: 'name-line' },
      el('span', { class: 'member-name', title: tags || null }, member.name),
      member.name === leader ? el('span', { class: 'badge badge-leader', 'data-leader': true }, 'leader') : null,
      member.local ? el('span', { class: 'badge badge-local' }, 'this node') : null),
    el('div', { class: 'address' }, member.address));
}

function stateCell(member) {
  return el('td', { class: 'state', 'data-state': member.state },
    el('span', { class: `state-pill state-${member.state}` }, member.state));
}

function healthCell(member) {
  const score = vital(member, 'health_score');
  // Lifeguard's health score: 0 is healthy, higher means the node doubts its own timing.
  return numberCell(score === null ? '—' : String(score), score > 0 ? 'warn' : '');
}

function loadCell(member) {
  const text = loadValue(member);
  return el('td', { class: 'load', title: text }, text === null ? '—' : cut(text, LOAD_CHARS));
}

/** Orders two sort values; null (unknown) last. */
function compareValues(x, y, direction) {
  if (x === y) return 0;
  if (x === null || x === undefined) return 1;
  if (y === null || y === undefined) return -1;
  const order = typeof x === 'number' && typeof y === 'number' ? x - y : collator.compare(x, y);
  return order * direction;
}

/** Builds the member table in the page's `#members` section; `changed` asks for a redraw. */
export function createMemberTable(cluster, changed) {
  const view = {
    sortKey: 'name',
    direction: 1,
    stateFilter: '',
    regionFilter: '',
    nameFilter: '',
    groupBy: '',
    page: 0,
  };
  const head = byId('member-head');
  const rows = byId('member-rows');
  const pageInfo = byId('page-info');
  const prev = byId('page-prev');
  const next = byId('page-next');
  const stateSelect = byId('filter-state');
  const regionSelect = byId('filter-region');
  const nameInput = byId('filter-name');
  const groupSelect = byId('group-by');

  setOptions(stateSelect, [['', 'all'], ...STATES.map((s) => [s, s.toLowerCase()])]);
  head.replaceChildren(...COLUMNS.map((column) => headerCell(column)));

  function headerCell(column) {
    const button = el('button', { type: 'button', 'data-sort': column.key }, column.label);
    button.addEventListener('click', () => sortBy(column.key));
    return el('th', { class: column.numeric ? 'num' : null, scope: 'col' }, button);
  }

  function sortBy(key) {
    view.direction = view.sortKey === key ? -view.direction : 1;
    view.sortKey = key;
    view.page = 0;
    changed();
  }

  /** Changes a view setting from a control; filters send the reader back to page one. */
  function bind(control, event, field) {
    control.addEventListener(event, () => {
      view[field] = control.value;
      view.page = 0;
      changed();
    });
  }
  bind(stateSelect, 'change', 'stateFilter');
  bind(regionSelect, 'change', 'regionFilter');
  bind(nameInput, 'input', 'nameFilter');
  bind(groupSelect, 'change', 'groupBy');
  prev.addEventListener('click', () => { view.page -= 1; changed(); });
  next.addEventListener('click', () => { view.page += 1; changed(); });

  /** The members that pass the filters, in display order. */
  function visible() {
    const needle = view.nameFilter.trim().toLowerCase();
    const matches = [];
    for (const member of cluster.members.values()) {
      if (view.stateFilter && member.state !== view.stateFilter) continue;
      if (view.regionFilter && member.region !== view.regionFilter) continue;
      if (needle && !member.name.toLowerCase().includes(needle)) continue;
      matches.push(member);
    }
    const column = COLUMNS.find((c) => c.key === view.sortKey) ?? COLUMNS[0];
    const group = GROUPS[view.groupBy];
    // Decorate once: sort values are computed per member, not per comparison.
    const keyed = matches.map((m) => ({ m, g: group ? group(m) : '', v: column.value(m) }));
    keyed.sort((a, b) => collator.compare(a.g, b.g)
      || compareValues(a.v, b.v, view.direction)
      || collator.compare(a.m.name, b.m.name));
    return keyed;
  }

  function groupRow(label, size) {
    return el('tr', { class: 'group-row', 'data-group': label },
      el('th', { colspan: COLUMNS.length, scope: 'rowgroup' },
        label, el('span', { class: 'group-size' }, ` · ${size} member${size === 1 ? '' : 's'}`)));
  }

  function memberRow(member, now, leader) {
    const cells = COLUMNS.map((column) => {
      const cell = column.cell(member, now, leader);
      cell.setAttribute('data-col', column.key);
      return cell;
    });
    return el('tr', { 'data-member': member.name, class: `row-${member.state}` }, cells);
  }

  // Rebuilt only when the set of regions changes: rebuilding a select closes it if open.
  let regionsShown = null;
  function updateRegions() {
    const regions = cluster.regions();
    const key = JSON.stringify(regions);
    if (key === regionsShown) return;
    regionsShown = key;
    setOptions(regionSelect, [['', 'all'], ...regions.map((r) => [r, r || '(none)'])]);
    view.regionFilter = regionSelect.value;
  }

  /** Redraws the table (one page of it) and its controls. */
  function render(now) {
    updateRegions();
    const keyed = visible();
    const pages = Math.max(1, Math.ceil(keyed.length / PAGE_SIZE));
    view.page = Math.min(Math.max(0, view.page), pages - 1);
    const start = view.page * PAGE_SIZE;
    const shown = keyed.slice(start, start + PAGE_SIZE);
    const groupSizes = new Map();
    for (const { g } of keyed) groupSizes.set(g, (groupSizes.get(g) ?? 0) + 1);

    const leader = cluster.leader?.leader ?? null;
    const out = [];
    let group = null;
    for (const { m, g } of shown) {
      if (view.groupBy && g !== group) out.push(groupRow(g, groupSizes.get(g)));
      group = g;
      out.push(memberRow(m, now, leader));
    }
    if (!out.length) {
      out.push(el('tr', { class: 'empty-row' },
        el('td', { colspan: COLUMNS.length }, 'No member matches the filters.')));
    }
    rows.replaceChildren(...out);

    for (const button of head.querySelectorAll('button[data-sort]')) {
      const sorted = button.dataset.sort === view.sortKey;
      const order = view.direction > 0 ? 'ascending' : 'descending';
      button.parentElement.setAttribute('aria-sort', sorted ? order : 'none');
    }
    const total = cluster.members.size;
    const range = keyed.length ? `${start + 1}–${start + shown.length}` : '0';
    const filtered = keyed.length === total ? '' : ` (filtered from ${total})`;
    pageInfo.textContent = `${range} of ${keyed.length}${filtered} · page ${view.page + 1} of ${pages}`;
    prev.disabled = view.page === 0;
    next.disabled = view.page >= pages - 1;
  }

  /** Shows only members in `state` (empty: all), as if chosen in the state filter. */
  function filterState(state) {
    stateSelect.value = state;
    view.stateFilter = stateSelect.value;
    view.page = 0;
    changed();
  }

  return { render, filterState };
}

/** Updates every age cell under `root` to `now`, without redrawing the rows. */
export function refreshAges(root, now) {
  for (const cell of root.querySelectorAll('td.age[data-at]')) {
    const at = Number(cell.dataset.at);
    cell.textContent = cell.dataset.style === 'ago' ? ago(at, now) : duration(now - at);
  }
}
