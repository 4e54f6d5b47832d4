// The cluster as this page knows it: one record per member, the leader view and the timeline
// of changes. Times are kept as absolute readings of the browser's clock (epoch ms), taken as
// "now minus the age the node reported", so ages keep growing on screen between updates
// without asking the node again.
//
// Input is the node's JSON, read defensively: a field of the wrong type becomes a neutral
// value instead of breaking the page.

/** Every member state, in the order the page lists them. */
export const STATES = ['ALIVE', 'SUSPECTED', 'DOWN', 'LEAVING', 'INIT'];

/** How many changes the timeline keeps. */
export const TIMELINE_LIMIT = 100;

/** The state column sorts the states that want attention first. */
export const STATE_RANK = { DOWN: 0, SUSPECTED: 1, LEAVING: 2, INIT: 3, ALIVE: 4 };

/** One member, as the table shows it. */
function blankMember(name, now) {
  return {
    name,
    address: '',
    state: 'INIT',
    incarnation: 0,
    region: '',
    zone: '',
    tags: {},
    local: false,
    sinceAt: now,
    heardAt: null,
    vitals: null,
  };
}

function text(value) {
  return typeof value === 'string' ? value : '';
}

function number(value) {
  return Number.isFinite(value) ? value : null;
}

function object(value) {
  return value && typeof value === 'object' && !Array.isArray(value) ? value : null;
}

function stateOf(value) {
  return STATES.includes(value) ? value : 'INIT';
}

/** A member record from one entry of a status document's `nodes`. */
function fromStatus(node, now, previous) {
  const name = text(node?.name);
  if (!name) return null;
  const member = blankMember(name, now);
  member.address = text(node.address);
  member.state = stateOf(node.state);
  member.incarnation = number(node.incarnation) ?? 0;
  member.region = text(node.region);
  member.zone = text(node.zone);
  member.tags = object(node.tags) ?? {};
  member.sinceAt = now - (number(node.since_ms) ?? 0);
  const heard = number(node.last_heartbeat_ms);
  member.heardAt = heard === null ? previous?.heardAt ?? null : now - heard;
  // Which member is the serving node is known from the document's node_name (takeNodeName).
  member.local = previous?.local ?? false;
  // A snapshot event carries no vitals: keep the last ones polled rather than blank the row.
  member.vitals = object(node.vitals) ?? previous?.vitals ?? null;
  return member;
}

/** The cluster state behind every view of the page. */
export class Cluster {
  constructor() {
    /** Members by name. */
    this.members = new Map();
    /** The name of the node serving the page. */
    this.nodeName = '';
    /** The last `/ha/leader` document, or null before the first. */
    this.leader = null;
    /** The last changes, newest first. */
    this.timeline = [];
    /** Bumped on every timeline change, so its view redraws only when it must. */
    this.timelineVersion = 0;
  }

  /** Replaces every member with those of a status document (a snapshot or resync event). */
  applySnapshot(doc, now) {
    const previous = this.members;
    this.members = new Map();
    for (const node of Array.isArray(doc?.nodes) ? doc.nodes : []) {
      const member = fromStatus(node, now, previous.get(node?.name));
      if (member) this.members.set(member.name, member);
    }
    this.takeNodeName(doc);
  }

  /**
   * Takes a polled `/ha/status`. While the event stream is up it is the only source of
   * states (a poll answered before an event must not undo it), so only ages and vitals are
   * taken; with `withStates` (the stream is down) the poll replaces everything.
   */
  applyStatus(doc, now, withStates) {
    if (withStates) {
      this.applySnapshot(doc, now);
      return;
    }
    for (const node of Array.isArray(doc?.nodes) ? doc.nodes : []) {
      const member = this.members.get(node?.name);
      if (!member) continue;
      member.vitals = object(node.vitals) ?? member.vitals;
      const heard = number(node.last_heartbeat_ms);
      if (heard !== null) member.heardAt = now - heard;
      const since = number(node.since_ms);
      if (node.state === member.state && since !== null) member.sinceAt = now - since;
    }
    this.takeNodeName(doc);
  }

  takeNodeName(doc) {
    const name = text(doc?.node_name);
    if (name) {
      this.nodeName = name;
      for (const member of this.members.values()) member.local = member.name === name;
    }
  }

  /** Applies a `membership` event: the member's new state, and a timeline entry. */
  applyMembership(event, now) {
    const name = text(event?.member);
    if (!name) return;
    const known = this.members.get(name);
    const member = known ?? blankMember(name, now);
    const before = known ? known.state : null;
    member.state = stateOf(event.state);
    member.incarnation = number(event.incarnation) ?? member.incarnation;
    member.address = text(event.address) || member.address;
    member.region = text(event.region);
    member.zone = text(event.zone);
    member.tags = object(event.tags) ?? member.tags;
    member.local = event.local === true || member.local;
    if (before !== member.state) member.sinceAt = now;
    this.members.set(name, member);
    this.record({
      at: now,
      member: name,
      previous: text(event.previous_state) || null,
      state: member.state,
      reason: text(event.reason),
    });
  }

  /** Applies a `reaped` event: the member is forgotten, its row goes. */
  applyReaped(event, now) {
    const name = text(event?.member);
    const known = this.members.get(name);
    if (!known) return;
    this.members.delete(name);
    this.record({ at: now, member: name, previous: known.state, state: null, reason: 'forgotten' });
  }

  /** Takes a `/ha/leader` document. */
  setLeader(doc) {
    this.leader = {
      leader: text(doc?.leader) || null,
      hasQuorum: doc?.has_quorum === true,
      alive: number(doc?.alive) ?? 0,
      expected: number(doc?.expected) ?? 0,
    };
  }

  record(entry) {
    this.timeline.unshift(entry);
    if (this.timeline.length > TIMELINE_LIMIT) this.timeline.length = TIMELINE_LIMIT;
    this.timelineVersion += 1;
  }

  /** Members by state, every state present (zero when none). */
  counts() {
    const counts = Object.fromEntries(STATES.map((state) => [state, 0]));
    for (const member of this.members.values()) counts[member.state] += 1;
    return counts;
  }

  /** Every region some member is in, sorted. */
  regions() {
    const regions = new Set();
    for (const member of this.members.values()) regions.add(member.region);
    return [...regions].sort();
  }
}
