/**
 * Names of machine states as the diagram knows them: the state node ids of the instance machine
 * (`instance.session.qr`), which the SVG keeps as `id="state:<node id>"`.
 */
import type { StateValue } from 'xstate';

export const MACHINE_ROOT_ID = 'instance';

/** `{ session: 'qr' }` → `session.qr`; `'created'` → `created`. */
export function statePath(value: StateValue): string {
  return segments(value).join('.');
}

/** Every active state node id, outermost first: `{ session: 'qr' }` → `instance.session`, `instance.session.qr`. */
export function activeStateIds(value: StateValue, rootId = MACHINE_ROOT_ID): string[] {
  const path = segments(value);
  return path.map((_, i) => [rootId, ...path.slice(0, i + 1)].join('.'));
}

function segments(value: StateValue): string[] {
  if (typeof value === 'string') return [value];
  const entries = Object.entries(value);
  // The instance machine has no parallel states: one child per level.
  const [key, child] = entries[0] ?? [];
  if (key === undefined) return [];
  return child === undefined ? [key] : [key, ...segments(child as StateValue)];
}
