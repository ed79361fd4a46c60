/**
 * /debug/*: the state-machine visualizer. The instance machine's diagram rendered from its
 * definition, one instance's live state over WebSocket (fed by the XState inspection observer), its
 * transition timeline, and the replayed history for the scrubber. Admin only: the `apikey` header or the
 * browser session cookie (docs/replay-and-visualizer.md).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { FromSchema } from 'json-schema-to-ts';
import type { StateValue } from 'xstate';
import { Errors } from '../../domain/errors.ts';
import type { EventLog } from '../../store/port.ts';
import {
  apiStateOfValue,
  instanceMachine,
  type InstanceContext,
  type InstanceMachineConfig,
} from '../../../machines/instance/index.ts';
import { HistorySnapshots, readHistoryPage, MAX_HISTORY_LIMIT } from '../../visualizer/audit.ts';
import { machineDiagram } from '../../visualizer/diagram.ts';
import { summariseContext } from '../../visualizer/history.ts';
import type { InspectionLog, TimelineEntry } from '../../visualizer/inspection-log.ts';
import { activeStateIds, statePath } from '../../visualizer/state-ids.ts';
import { pageHeaders, signInPageOnRefusal } from '../browser-auth.ts';
import { idParam, type IdParam } from '../schemas.ts';
import { loadStaticFiles } from '../static-files.ts';

export interface DebugRoutesOptions {
  readonly store: EventLog;
  readonly inspection: InspectionLog;
  /** The live actor's snapshot, when the instance has one in this process. */
  readonly liveSnapshot: (
    instanceId: string,
  ) => { readonly value: StateValue; readonly context: InstanceContext; readonly status: string } | undefined;
  readonly machineConfig?: InstanceMachineConfig;
}

const historyQuery = {
  type: 'object',
  properties: {
    from: { type: 'string', pattern: '^[0-9]{1,9}$' },
    limit: { type: 'string', pattern: '^[0-9]{1,4}$' },
  },
} as const;

const admin = { access: { browser: {} } } as const;

export const debugRoutes: FastifyPluginAsync<DebugRoutesOptions> = async (app, options) => {
  const { store, inspection, machineConfig = {} } = options;
  const files = loadStaticFiles();
  const page = (name: string): Buffer => {
    const file = files.get(name);
    if (!file) throw new Error(`missing static file ${name}`);
    return file.body;
  };
  if (!app.hasDecorator('websocketServer')) {
    throw new Error('register @fastify/websocket once at the root before the debug routes');
  }
  // The diagram is rendered on the first visit, not at start-up: Graphviz's WebAssembly leaves ~15 MB in the
  // process once used, which every server would carry for a page few open (test/integration/replay/
  // visualizer.test.ts renders it, so a broken diagram still fails the tests).

  app.get(
    '/debug/machines/instance.svg',
    { config: admin, schema: { tags: ['debug'], summary: 'The instance machine diagram (SVG; admin)' } },
    async (request, reply) => {
      const diagram = await machineDiagram(instanceMachine);
      reply.header('etag', diagram.etag).header('cache-control', 'private, no-cache');
      if (request.headers['if-none-match'] === diagram.etag) return reply.status(304).send();
      return reply.type('image/svg+xml').header('x-content-type-options', 'nosniff').send(diagram.svg);
    },
  );

  app.get(
    '/debug/machines/instance.dot',
    {
      config: admin,
      schema: { tags: ['debug'], summary: 'The instance machine diagram as Graphviz DOT (admin)' },
    },
    async (_request, reply) => {
      const diagram = await machineDiagram(instanceMachine);
      return reply.type('text/vnd.graphviz; charset=utf-8').send(diagram.dot);
    },
  );

  app.get<{ Params: IdParam }>(
    '/debug/instances/:id',
    {
      config: admin,
      // Refused: the sign-in page with the status, so a browser can sign in and reload.
      errorHandler: signInPageOnRefusal(page('login.html')),
      schema: {
        tags: ['debug'],
        summary: 'Visualizer page: diagram, live state, timeline and history scrubber (admin)',
        params: idParam,
      },
    },
    async (request, reply) => pageHeaders(reply, request).send(page('visualizer.html')),
  );

  const snapshots = new HistorySnapshots();

  /** The live actor's state, or (no actor in this process yet) the fold of the stream. */
  async function currentOf(id: string) {
    const live = options.liveSnapshot(id);
    if (live) {
      return {
        live: true,
        state: apiStateOfValue(live.value),
        machineState: statePath(live.value),
        stateIds: activeStateIds(live.value),
        context: summariseContext(live.context),
      };
    }
    const history = await readHistoryPage(
      store,
      id,
      { from: Number.MAX_SAFE_INTEGER, limit: 1 },
      machineConfig,
      snapshots,
    );
    if (!history?.current) throw Errors.instanceNotFound(id);
    return { live: false, ...history.current };
  }

  app.get<{ Params: IdParam }>(
    '/debug/instances/:id/state',
    {
      config: { ...admin, instanceFrom: ['params.id'] },
      schema: {
        tags: ['debug'],
        summary: 'Current machine state and the live transition timeline (admin)',
        params: idParam,
      },
    },
    async (request) => {
      const { id } = request.instance;
      const current = await currentOf(id);
      return {
        instance: { id, name: current.context.name },
        current,
        timeline: inspection.entries(id),
        capacity: inspection.capacity,
      };
    },
  );

  app.get<{ Params: IdParam; Querystring: FromSchema<typeof historyQuery> }>(
    '/debug/instances/:id/history',
    {
      config: { ...admin, instanceFrom: ['params.id'] },
      schema: {
        tags: ['debug'],
        summary: 'The replayed history (as GET /instance/:id/history), for the scrubber (admin)',
        params: idParam,
        querystring: historyQuery,
      },
    },
    async (request) => {
      const { id } = request.instance;
      const history = await readHistoryPage(
        store,
        id,
        {
          from: Number(request.query.from ?? 1),
          limit: Math.min(Number(request.query.limit ?? MAX_HISTORY_LIMIT), MAX_HISTORY_LIMIT),
        },
        machineConfig,
        snapshots,
      );
      if (!history) throw Errors.instanceNotFound(request.params.id);
      return history;
    },
  );

  app.get<{ Params: IdParam }>(
    '/debug/instances/:id/live',
    {
      websocket: true,
      // The live actor's snapshot is in the owner's memory only.
      config: { access: { browser: { sameOrigin: true } }, instanceFrom: ['params.id'], runsOn: 'owner' },
      schema: {
        tags: ['debug'],
        summary:
          'WebSocket: {type:"hello", current, timeline} then {type:"entry", entry} per transition (admin)',
        params: idParam,
      },
    },
    (socket, request) => {
      const id = request.instanceIfNamed?.id;
      if (!id) {
        socket.close(1008, 'unauthorised');
        return;
      }
      const send = (message: unknown): void => {
        if (socket.readyState !== socket.OPEN) return;
        // A browser that stops reading must not make the server buffer without bound.
        if (socket.bufferedAmount > 1024 * 1024) {
          socket.close(4008, 'too slow: reload the page');
          return;
        }
        socket.send(JSON.stringify(message));
      };
      const unsubscribe = inspection.subscribe(id, (_instance, entry: TimelineEntry) =>
        send({ type: 'entry', entry }),
      );
      socket.on('close', unsubscribe);
      socket.on('error', unsubscribe);
      currentOf(id).then(
        (current) => send({ type: 'hello', current, timeline: inspection.entries(id) }),
        () => socket.close(1011, 'instance not found'),
      );
    },
  );
};
