// Small DOM helpers. Every string goes in as a text node or an attribute value, never as
// markup: member names, tags, reasons and store values come from the cluster, and none of
// them may be able to add elements or scripts to the page.

/**
 * Creates `<tag>` with `attrs` (null, undefined and false are left out; `class` sets the
 * class list) and `children` (strings and numbers become text nodes; null is skipped).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Shortcut for `document.getElementById`, throwing if the page lacks the element. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

/** Sets the options of `select` to `[value, label]` pairs, keeping its value when it is still offered. */
export function setOptions(select, pairs) {
  const kept = select.value;
  select.replaceChildren(...pairs.map(([value, label]) => el('option', { value }, label)));
  select.value = pairs.some(([value]) => value === kept) ? kept : '';
}
