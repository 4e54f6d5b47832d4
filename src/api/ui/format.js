// How numbers read on the page: sizes in binary units, CPU as a percentage of one core, ages
// as the two largest units ("3 m 10 s"), clock times in the browser's own time zone.

const KIB = 1024;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
const DASH = '—';

/** `n` bytes as "12.3 MiB"; a dash when unknown. */
export function bytes(n) {
  if (!Number.isFinite(n)) return DASH;
  let value = n;
  let unit = 0;
  while (value >= KIB && unit < UNITS.length - 1) {
    value /= KIB;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A CPU share (CPU seconds per wall second) as "3.2 %"; small shares keep two decimals. */
export function percent(share) {
  if (!Number.isFinite(share)) return DASH;
  const pct = share * 100;
  return `${pct.toFixed(pct < 10 ? 2 : 1)} %`;
}

/** A duration in milliseconds as its two largest units: "42 s", "3 m 10 s", "2 h 5 m", "4 d 1 h". */
export function duration(ms) {
  if (!Number.isFinite(ms)) return DASH;
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} m`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** How long ago `at` (epoch ms) was, as of `now`: "now" under a second, else "3 s ago". */
export function ago(at, now) {
  if (!Number.isFinite(at)) return DASH;
  const ms = now - at;
  return ms < 1000 ? 'now' : `${duration(ms)} ago`;
}

/** The wall-clock time of `at` (epoch ms) as "14:03:21". */
export function clock(at) {
  return new Date(at).toLocaleTimeString([], { hour12: false });
}

/** A gateway's load object as "in_flight=3 queue=0.5"; a dash when it reported none. */
export function loadText(load) {
  if (!load || typeof load !== 'object') return DASH;
  const fields = Object.entries(load).map(([key, value]) =>
    `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return fields.length ? fields.join(' ') : DASH;
}

/** `text` cut to `max` characters with an ellipsis. */
export function cut(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
