/** A tiny DOM builder: text goes in as text (never as HTML), so nothing from the store can inject markup. */
export type Child = Node | string | null | undefined | false;

export function h(
  tag: string,
  attrs: { [key: string]: string | ((ev: Event) => void) | undefined } = {},
  ...children: (Child | Child[])[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const key of Object.keys(attrs)) {
    const v = attrs[key];
    if (v === undefined) {
      continue;
    }
    if (typeof v === 'function') {
      el.addEventListener(key.replace(/^on/, ''), v as EventListener);
    } else if (key === 'class') {
      el.className = v;
    } else {
      el.setAttribute(key, v);
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) {
      continue;
    }
    el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

export function svg(tag: string, attrs: { [key: string]: string } = {}, ...children: Node[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const key of Object.keys(attrs)) {
    el.setAttribute(key, attrs[key]);
  }
  children.forEach(c => el.appendChild(c));
  return el;
}

/** Replace an element's children. */
export function fill(el: HTMLElement, ...children: (Child | Child[])[]): void {
  el.textContent = '';
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) {
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
  }
}
