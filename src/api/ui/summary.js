// The top of the page: which node serves it, the leader and quorum, and members by state.

import { byId } from './dom.js';
import { STATES } from './model.js';

/** Builds the summary view; a click on a state's count filters the table by that state. */
export function createSummary(cluster, filterState) {
  const total = byId('count-total');
  const nodeName = byId('node-name');
  const leader = byId('leader');
  const quorum = byId('quorum');
  const counts = new Map(STATES.map((state) => [state, byId(`count-${state}`)]));

  for (const button of document.querySelectorAll('button[data-filter-state]')) {
    button.addEventListener('click', () => filterState(button.dataset.filterState));
  }

  /** Redraws the counts, the leader and the quorum. */
  function render() {
    const byState = cluster.counts();
    total.textContent = String(cluster.members.size);
    for (const [state, node] of counts) node.textContent = String(byState[state]);
    nodeName.textContent = cluster.nodeName || '…';

    const view = cluster.leader;
    leader.textContent = view ? view.leader ?? 'none' : '…';
    if (!view) {
      quorum.textContent = 'quorum …';
      quorum.className = 'pill';
      return;
    }
    const tally = `${view.alive} of ${view.expected} alive`;
    quorum.textContent = view.hasQuorum ? `quorum · ${tally}` : `no quorum · ${tally}`;
    quorum.className = view.hasQuorum ? 'pill pill-ok' : 'pill pill-bad';
  }

  return { render };
}
