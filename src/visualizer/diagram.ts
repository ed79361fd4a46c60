/**
 * The machine diagram, drawn from the machine definition itself: `toDirectedGraph` (xstate/graph) → DOT →
 * Graphviz compiled to WebAssembly (@viz-js/viz, bundled: no network) → SVG. Every state keeps its node
 * id as `id="state:<node id>"` (a cluster for compound states), so the page highlights states with CSS.
 * Rendered once per machine version (a hash of the definition) and cached.
 */
import { createHash } from 'node:crypto';
import type { AnyStateMachine } from 'xstate';
import { toDirectedGraph } from 'xstate/graph';

interface GraphNode {
  readonly id: string;
  readonly stateNode: {
    readonly key: string;
    readonly type: string;
    readonly initial?: { readonly target: ReadonlyArray<{ readonly id: string }> } | undefined;
  };
  readonly children: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
}

interface GraphEdge {
  readonly source: { readonly id: string };
  readonly target: { readonly id: string };
  readonly label: { readonly text: string };
  readonly transition: {
    readonly target?: ReadonlyArray<{ readonly id: string }> | undefined;
    readonly guard?: unknown;
    readonly reenter?: boolean;
  };
}

/** The version a rendered diagram belongs to: changes whenever the definition does. */
export function machineVersion(machine: AnyStateMachine): string {
  return createHash('sha256').update(JSON.stringify(machine.definition)).digest('hex').slice(0, 16);
}

function quote(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

function guardName(guard: unknown): string | undefined {
  if (typeof guard === 'string') return guard;
  if (guard && typeof guard === 'object' && 'type' in guard) {
    const { type, params } = guard as { type: unknown; params?: Record<string, unknown> };
    const first = params && typeof params === 'object' ? Object.values(params)[0] : undefined;
    return typeof first === 'string' ? `${String(type)}(${first})` : String(type);
  }
  return undefined;
}

/** Internal event names made readable: `xstate.after.reconnectDelay.…` → `after reconnectDelay`. */
export function eventLabel(eventType: string): string {
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1]}`;
  if (eventType.startsWith('xstate.done.actor.')) return 'done';
  if (eventType.startsWith('xstate.error.actor.')) return 'error';
  return eventType;
}

function flatten(node: GraphNode): GraphNode[] {
  return [node, ...node.children.flatMap(flatten)];
}

/** The DOT text of the machine's diagram. */
export function machineDot(machine: AnyStateMachine): string {
  const root = toDirectedGraph(machine) as unknown as GraphNode;
  const nodes = new Map(flatten(root).map((n) => [n.id, n]));
  const isCompound = (id: string): boolean => (nodes.get(id)?.children.length ?? 0) > 0;
  /** The atomic node an edge to or from a compound state is drawn at (its initial child, recursively). */
  const anchor = (id: string): string => {
    const node = nodes.get(id);
    if (!node || node.children.length === 0) return id;
    const initial = node.stateNode.initial?.target[0]?.id ?? node.children[0]?.id ?? id;
    return anchor(initial);
  };
  const within = (inner: string, outer: string): boolean => inner === outer || inner.startsWith(`${outer}.`);

  const lines: string[] = [
    'digraph machine {',
    '  graph [compound=true, rankdir=LR, fontname="Helvetica", fontsize=12, nodesep=0.35, ranksep=0.6, bgcolor="transparent"];',
    '  node [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#57606a", fontname="Helvetica", fontsize=12];',
    '  edge [fontname="Helvetica", fontsize=9, color="#8c959f", fontcolor="#424a53", arrowsize=0.7];',
  ];

  // Targetless transitions change no state (configuration, pairing codes, stale signals): listed in the
  // state's tooltip instead of drawn as loops.
  const internal = new Map<string, Set<string>>();
  const noteInternal = (id: string, label: string): void => {
    const set = internal.get(id) ?? new Set<string>();
    set.add(label);
    internal.set(id, set);
  };

  // Parallel edges between the same two states are merged into one, labels joined.
  const edges = new Map<string, { source: string; target: string; labels: string[] }>();
  for (const node of nodes.values()) {
    for (const edge of node.edges) {
      const guard = guardName(edge.transition.guard);
      const label = `${eventLabel(edge.label.text)}${guard ? ` [${guard}]` : ''}`;
      if (!edge.transition.target || edge.transition.target.length === 0) {
        if (guard !== 'isStaleSignal') noteInternal(edge.source.id, eventLabel(edge.label.text));
        continue;
      }
      const key = `${edge.source.id}→${edge.target.id}`;
      const merged = edges.get(key) ?? { source: edge.source.id, target: edge.target.id, labels: [] };
      if (!merged.labels.includes(label)) merged.labels.push(label);
      edges.set(key, merged);
    }
  }

  const tooltip = (id: string): string => {
    const extra = internal.get(id);
    return extra && extra.size > 0 ? `${id}\nalso handles (no state change): ${[...extra].join(', ')}` : id;
  };

  const emit = (node: GraphNode, indent: string): void => {
    for (const child of node.children) {
      if (child.children.length > 0) {
        lines.push(`${indent}subgraph ${quote(`cluster_${child.id}`)} {`);
        lines.push(
          `${indent}  id=${quote(`state:${child.id}`)}; label=${quote(child.stateNode.key)}; tooltip=${quote(tooltip(child.id))};`,
        );
        lines.push(`${indent}  style="rounded"; color="#57606a"; fontsize=13;`);
        emit(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        const final = child.stateNode.type === 'final';
        lines.push(
          `${indent}${quote(child.id)} [id=${quote(`state:${child.id}`)}, label=${quote(child.stateNode.key)}, tooltip=${quote(tooltip(child.id))}${final ? ', peripheries=2' : ''}];`,
        );
      }
    }
  };
  emit(root, '  ');

  // The root's own transitions apply in every state: drawn from an "any state" marker.
  const anyId = `${root.id}.*`;
  lines.push(
    `  ${quote(anyId)} [id=${quote(`state:${root.id}`)}, label="any state", shape=plaintext, style="", tooltip=${quote(tooltip(root.id))}];`,
  );
  const initialId = root.stateNode.initial?.target[0]?.id;
  if (initialId) {
    lines.push('  "__start" [shape=point, width=0.12, label="", style=filled, fillcolor="#24292f"];');
    lines.push(`  "__start" -> ${quote(anchor(initialId))};`);
  }

  for (const { source, target, labels } of edges.values()) {
    const attributes = [`label=${quote(labels.join('\n'))}`];
    let tail = source === root.id ? anyId : anchor(source);
    const head = anchor(target);
    if (source !== root.id && isCompound(source) && !within(target, source)) {
      attributes.push(`ltail=${quote(`cluster_${source}`)}`);
    }
    if (isCompound(target) && !within(source, target)) {
      attributes.push(`lhead=${quote(`cluster_${target}`)}`);
    }
    if (source === target && isCompound(source)) tail = head; // re-entering a compound state
    attributes.push(`id=${quote(`transition:${source}->${target}`)}`);
    lines.push(`  ${quote(tail)} -> ${quote(head)} [${attributes.join(', ')}];`);
  }
  lines.push('}');
  return lines.join('\n');
}

/**
 * Graphviz compiled to WebAssembly, for one render: its instance holds ~15 MB of WebAssembly memory, and
 * the server renders one diagram per machine version (cached below), so nothing keeps it afterwards.
 */
async function renderOnce(dot: string): Promise<string> {
  const viz = await import('@viz-js/viz');
  return (await viz.instance()).renderString(dot, { format: 'svg' });
}

export interface RenderedDiagram {
  readonly version: string;
  readonly dot: string;
  /** Standalone SVG without the XML prolog, sized by its viewBox (ready to inline). */
  readonly svg: string;
  readonly etag: string;
  readonly renderMs: number;
}

const cache = new Map<string, Promise<RenderedDiagram>>();

/** The machine's diagram, rendered once per machine version. */
export function machineDiagram(machine: AnyStateMachine): Promise<RenderedDiagram> {
  const version = machineVersion(machine);
  const key = `${machine.id}@${version}`;
  let rendered = cache.get(key);
  if (!rendered) {
    rendered = (async () => {
      const started = performance.now();
      const dot = machineDot(machine);
      const raw = await renderOnce(dot);
      const svg = raw
        .replace(/^<\?xml[^>]*>\s*/, '')
        .replace(/<!DOCTYPE[^>]*>\s*/, '')
        .replace(/<svg width="[^"]*" height="[^"]*"/, '<svg role="img" aria-label="state machine diagram"');
      return {
        version,
        dot,
        svg,
        etag: `"${machine.id}-${version}"`,
        renderMs: Math.round(performance.now() - started),
      };
    })();
    rendered.catch(() => cache.delete(key));
    cache.set(key, rendered);
  }
  return rendered;
}
