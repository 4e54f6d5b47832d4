// Synthetic mode (`/ui?synthetic=N`): N made-up members in the shape of `/ha/status`, fed
// through the same model and views as a real node's, with nothing fetched. It measures how
// long the page takes to draw a large cluster, and shows the page without one.

/** Largest N taken, so a typo in the URL cannot hang the tab. */
export const MAX_SYNTHETIC = 100000;

const REGIONS = ['eu-west', 'eu-central', 'us-east', 'ap-south'];
const ZONES = ['a', 'b', 'c'];
const MIB = 1024 * 1024;

/** A seeded generator (mulberry32): the same N always gives the same cluster. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The N requested by `?synthetic=N`, or 0 for a live page. */
export function syntheticCount(param) {
  const n = Number.parseInt(param ?? '', 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, MAX_SYNTHETIC) : 0;
}

/** Mostly ALIVE, with a few of each other state, as a large real cluster would look. */
function pickState(roll) {
  if (roll < 0.02) return 'SUSPECTED';
  if (roll < 0.04) return 'DOWN';
  if (roll < 0.05) return 'LEAVING';
  if (roll < 0.055) return 'INIT';
  return 'ALIVE';
}

function syntheticNode(index, width, next) {
  const region = REGIONS[index % REGIONS.length];
  const state = index === 0 ? 'ALIVE' : pickState(next());
  const name = `node-${String(index + 1).padStart(width, '0')}`;
  const gateway = next() < 0.5;
  return {
    name,
    // RFC 2544's benchmarking range: clearly made up, and the page never dials it anyway.
    address: `198.${18 + ((index >> 16) & 1)}.${(index >> 8) & 255}.${index & 255}:39527`,
    state,
    incarnation: Math.floor(next() * 4),
    region,
    zone: `${region}-1${ZONES[Math.floor(index / REGIONS.length) % ZONES.length]}`,
    tags: gateway ? { role: 'gateway' } : {},
    since_ms: Math.floor(next() * 3600000),
    last_heartbeat_ms: state === 'DOWN' ? null : Math.floor(next() * 5000),
    vitals: state === 'DOWN' ? null : {
      rss_bytes: Math.floor((6 + next() * 40) * MIB),
      cpu_share: next() * 0.05,
      open_fds: 20 + Math.floor(next() * 30),
      uptime_s: Math.floor(next() * 86400),
      version: '0.1.0',
      health_score: next() < 0.03 ? 1 + Math.floor(next() * 3) : 0,
      load: gateway ? { in_flight: Math.floor(next() * 50), queue: Math.floor(next() * 8) } : null,
    },
  };
}

/** A `/ha/status` document of `count` made-up members, served by the first. */
export function syntheticStatus(count) {
  const next = random(count);
  const width = String(count).length;
  const nodes = Array.from({ length: count }, (_, i) => syntheticNode(i, width, next));
  return { node_name: nodes[0].name, node_count: count, nodes };
}

/** The membership events that led the made-up members off ALIVE, for the timeline. */
export function syntheticChanges(status) {
  return status.nodes
    .filter((node) => node.state !== 'ALIVE')
    .slice(0, 20)
    .map((node, seq) => ({
      seq, member: node.name, state: node.state, previous_state: 'ALIVE',
      incarnation: node.incarnation, reason: 'synthetic', address: node.address,
      region: node.region, zone: node.zone, tags: node.tags, local: false,
    }));
}

/** The leader document: the first ALIVE member by name, with a quorum count. */
export function syntheticLeader(status) {
  const alive = status.nodes.filter((node) => node.state === 'ALIVE');
  return {
    leader: alive[0]?.name ?? null,
    has_quorum: alive.length * 2 > status.nodes.length,
    alive: alive.length,
    expected: status.nodes.length,
    since_ms: 0,
  };
}

/** Made-up stores, in the shapes of `/ha/stores` and `/ha/stores/{store}`. */
export function syntheticStores(status) {
  const stores = [
    { name: 'nodes', kind: 'lww', keys: status.nodes.length, bytes: status.nodes.length * 260 },
    { name: 'workers', kind: 'lww', keys: 12, bytes: 2400 },
    { name: 'sessions', kind: 'counter', keys: 3, bytes: 96 },
  ];
  const entries = (name) => {
    const store = stores.find((s) => s.name === name);
    if (!store) return Promise.reject(new Error(`no store ${name}`));
    const values = name === 'nodes'
      ? status.nodes.map((node) => ({ key: node.name, value: node.vitals, version: '1' }))
      : Array.from({ length: store.keys }, (_, i) => ({ key: `${name}-${i}`, value: i, version: '1' }));
    return Promise.resolve({ store: name, kind: store.kind, entries: values });
  };
  return { stores: () => Promise.resolve(stores), entries };
}
