/**
 * A KurrentDB/EventStoreDB stand-in on the wire: a @grpc/grpc-js server with the service definitions that
 * ship in @kurrent/kurrentdb-client (`generated/kurrentdb/protocols/v1`), so the real client (its grpc-js
 * half for appends, deletes and subscriptions, and its Rust bridge for reads) talks to it as to a node.
 *
 * Served: Streams (Read: stream and $all, forwards and backwards, filters, subscriptions to $all with
 * confirmation, checkpoints and caught-up; Append; BatchAppend; Delete; Tombstone), ServerFeatures
 * (GetSupportedMethods, which the client calls when it connects) and Gossip (Read: this node as leader).
 * Errors use the statuses, trailers and error details the client maps (wrong expected version, stream
 * deleted, stream not found, deadline exceeded). Insecure only (tls=false), no authentication.
 *
 * The log rules live in log.ts. docs/event-store.md says what this covers and what only a server shows.
 */
import { createRequire } from 'node:module';
import { randomUUID } from 'node:crypto';
import type * as Grpc from '@grpc/grpc-js';
import {
  StandInLog,
  StreamDeletedFault,
  WrongExpectedVersionFault,
  comparePositions,
  type ExpectedState,
  type LogPosition,
  type LoggedEvent,
  type ProposedEvent,
} from './log.ts';
import type * as StreamsPb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/streams_pb.js';
import type * as SharedPb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/shared_pb.js';
import type * as StatusPb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/status_pb.js';
import type * as CodePb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/code_pb.js';
import type * as FeaturesPb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/serverfeatures_pb.js';
import type * as GossipPb from '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1/gossip_pb.js';
import type * as EmptyPb from 'google-protobuf/google/protobuf/empty_pb.js';
import type * as AnyPb from 'google-protobuf/google/protobuf/any_pb.js';
import type * as TimestampPb from 'google-protobuf/google/protobuf/timestamp_pb.js';

// The generated modules are CommonJS whose named exports Node's ESM loader cannot see: require them, and
// require grpc-js and google-protobuf from the client package, so both sides share one copy of each.
const require = createRequire(createRequire(import.meta.url).resolve('@kurrent/kurrentdb-client'));
const grpc = require('@grpc/grpc-js') as typeof Grpc;
const PROTOCOLS = '@kurrent/kurrentdb-client/generated/kurrentdb/protocols/v1';
const streamsPb = require(`${PROTOCOLS}/streams_pb.js`) as typeof StreamsPb;
const streamsGrpc = require(`${PROTOCOLS}/streams_grpc_pb.js`) as { StreamsService: Grpc.ServiceDefinition };
const sharedPb = require(`${PROTOCOLS}/shared_pb.js`) as typeof SharedPb;
const statusPb = require(`${PROTOCOLS}/status_pb.js`) as typeof StatusPb;
const codePb = require(`${PROTOCOLS}/code_pb.js`) as typeof CodePb;
const featuresPb = require(`${PROTOCOLS}/serverfeatures_pb.js`) as typeof FeaturesPb;
const featuresGrpc = require(`${PROTOCOLS}/serverfeatures_grpc_pb.js`) as {
  ServerFeaturesService: Grpc.ServiceDefinition;
};
const gossipPb = require(`${PROTOCOLS}/gossip_pb.js`) as typeof GossipPb;
const gossipGrpc = require(`${PROTOCOLS}/gossip_grpc_pb.js`) as { GossipService: Grpc.ServiceDefinition };
const emptyPb = require('google-protobuf/google/protobuf/empty_pb.js') as typeof EmptyPb;
const anyPb = require('google-protobuf/google/protobuf/any_pb.js') as typeof AnyPb;
const timestampPb = require('google-protobuf/google/protobuf/timestamp_pb.js') as typeof TimestampPb;

type ReadReq = InstanceType<typeof streamsPb.ReadReq>;
type ReadResp = InstanceType<typeof streamsPb.ReadResp>;
type AppendReq = InstanceType<typeof streamsPb.AppendReq>;
type AppendResp = InstanceType<typeof streamsPb.AppendResp>;
type BatchAppendReq = InstanceType<typeof streamsPb.BatchAppendReq>;
type BatchAppendResp = InstanceType<typeof streamsPb.BatchAppendResp>;
type DeleteReq = InstanceType<typeof streamsPb.DeleteReq>;
type DeleteResp = InstanceType<typeof streamsPb.DeleteResp>;
type TombstoneReq = InstanceType<typeof streamsPb.TombstoneReq>;
type TombstoneResp = InstanceType<typeof streamsPb.TombstoneResp>;
type UUIDMessage = InstanceType<typeof sharedPb.UUID>;
type ProposedMessage =
  | InstanceType<typeof streamsPb.AppendReq.ProposedMessage>
  | InstanceType<typeof streamsPb.BatchAppendReq.ProposedMessage>;

const ReadOptions = streamsPb.ReadReq.Options;
/** The server's filtered-read window when the client asks for `count` (no max). */
const DEFAULT_SEARCH_WINDOW = 32;

export interface StandInOptions {
  /** 0 (default) for an ephemeral port. */
  readonly port?: number;
  readonly host?: string;
  /** Persist the log to this JSON-lines file and replay it at start (restart tests). */
  readonly file?: string;
  /** Reported by ServerFeatures. */
  readonly serverVersion?: string;
  /** Leave BatchAppend out of ServerFeatures, so the client falls back to Append. */
  readonly withoutBatchAppend?: boolean;
}

export interface KurrentStandIn {
  readonly port: number;
  /** `kurrentdb://127.0.0.1:<port>?tls=false` */
  readonly url: string;
  readonly log: StandInLog;
  /** How many calls each method has received (e.g. `batchAppend`, `append`, `read`). */
  readonly calls: Record<string, number>;
  /** Delays every append by this long before it commits (to exercise deadlines); 0 by default. */
  appendDelayMs: number;
  /** Ends every open call with UNAVAILABLE and stops listening. */
  stop(): Promise<void>;
}

function streamNameOf(identifier: { getStreamName(): Uint8Array | string } | undefined): string {
  const name = identifier?.getStreamName() ?? '';
  return typeof name === 'string'
    ? Buffer.from(name, 'base64').toString('utf8')
    : Buffer.from(name).toString('utf8');
}

function identifierOf(stream: string): InstanceType<typeof sharedPb.StreamIdentifier> {
  const identifier = new sharedPb.StreamIdentifier();
  identifier.setStreamName(Buffer.from(stream, 'utf8'));
  return identifier;
}

function uuidToString(uuid: UUIDMessage | undefined): string {
  if (!uuid) return randomUUID();
  if (uuid.hasStructured()) {
    const structured = uuid.getStructured()!;
    const hex = (value: string): string => BigInt.asUintN(64, BigInt(value)).toString(16).padStart(16, '0');
    const all = hex(structured.getMostSignificantBits()) + hex(structured.getLeastSignificantBits());
    return `${all.slice(0, 8)}-${all.slice(8, 12)}-${all.slice(12, 16)}-${all.slice(16, 20)}-${all.slice(20)}`;
  }
  return uuid.getString();
}

function uuidMessage(id: string, structured: boolean): UUIDMessage {
  const uuid = new sharedPb.UUID();
  if (structured) {
    const hex = id.replace(/-/g, '');
    const value = new sharedPb.UUID.Structured();
    value.setMostSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(0, 16)}`)).toString());
    value.setLeastSignificantBits(BigInt.asIntN(64, BigInt(`0x${hex.slice(16)}`)).toString());
    uuid.setStructured(value);
  } else {
    uuid.setString(id);
  }
  return uuid;
}

function proposedEvent(message: ProposedMessage): ProposedEvent {
  const metadata = message.getMetadataMap();
  return {
    id: uuidToString(message.getId()),
    type: metadata.get('type') ?? '',
    contentType: metadata.get('content-type') ?? 'application/octet-stream',
    data: Buffer.from(message.getData_asU8()),
    metadata: Buffer.from(message.getCustomMetadata_asU8()),
  };
}

/** A gRPC error with the `exception` trailer the client switches on. */
function serviceError(
  code: Grpc.status,
  details: string,
  trailers: Record<string, string> = {},
): Grpc.ServiceError {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(trailers)) metadata.set(key, value);
  return Object.assign(new Error(details), { code, details, metadata });
}

function faultToError(fault: unknown): Grpc.ServiceError {
  if (fault instanceof StreamDeletedFault) {
    return serviceError(grpc.status.FAILED_PRECONDITION, fault.message, {
      exception: 'stream-deleted',
      'stream-name': fault.stream,
    });
  }
  if (fault instanceof WrongExpectedVersionFault) {
    const expected = fault.expected;
    const trailers: Record<string, string> = {
      exception: 'wrong-expected-version',
      'stream-name': fault.stream,
      'expected-version': expected.kind === 'revision' ? String(expected.revision) : expectedCode(expected),
    };
    if (fault.current !== undefined) trailers['actual-version'] = String(fault.current);
    return serviceError(grpc.status.FAILED_PRECONDITION, fault.message, trailers);
  }
  const message = fault instanceof Error ? fault.message : String(fault);
  return serviceError(grpc.status.INTERNAL, message);
}

/** The server's numeric codes for the expected states (ExpectedVersion.Any = -2, NoStream = -1, …). */
function expectedCode(expected: ExpectedState): string {
  return expected.kind === 'any' ? '-2' : expected.kind === 'no_stream' ? '-1' : '-4';
}

function deadlinePassed(call: { getDeadline(): Grpc.Deadline }): boolean {
  const deadline = call.getDeadline();
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) && Date.now() >= ms;
}

const deadlineError = (): Grpc.ServiceError =>
  serviceError(grpc.status.DEADLINE_EXCEEDED, 'Deadline Exceeded');

interface Matcher {
  (event: LoggedEvent): boolean;
}

function filterOf(
  options: InstanceType<typeof ReadOptions>,
): { matches: Matcher; window: number; multiplier: number } | undefined {
  if (options.getFilterOptionCase() !== ReadOptions.FilterOptionCase.FILTER) return undefined;
  const filter = options.getFilter()!;
  const onStream = filter.hasStreamIdentifier();
  const expression = onStream ? filter.getStreamIdentifier()! : filter.getEventType()!;
  const regex = expression.getRegex();
  const prefixes = expression.getPrefixList();
  const pattern = regex ? new RegExp(regex) : undefined;
  const matches: Matcher = (event) => {
    const subject = onStream ? event.stream : event.type;
    if (pattern) return pattern.test(subject);
    return prefixes.length === 0 || prefixes.some((prefix) => subject.startsWith(prefix));
  };
  const window = filter.hasMax() ? filter.getMax() : DEFAULT_SEARCH_WINDOW;
  return { matches, window, multiplier: Math.max(1, filter.getCheckpointintervalmultiplier()) };
}

export async function startKurrentStandIn(options: StandInOptions = {}): Promise<KurrentStandIn> {
  const log = new StandInLog(options.file);
  const server = new grpc.Server();
  const subscriptions = new Set<Grpc.ServerWritableStream<ReadReq, ReadResp>>();
  const state = { appendDelayMs: 0 };
  const calls: Record<string, number> = {};
  const count = (method: string): void => {
    calls[method] = (calls[method] ?? 0) + 1;
  };

  const readEvent = (event: LoggedEvent, structured: boolean): ReadResp => {
    const recorded = new streamsPb.ReadResp.ReadEvent.RecordedEvent();
    recorded.setId(uuidMessage(event.id, structured));
    recorded.setStreamIdentifier(identifierOf(event.stream));
    recorded.setStreamRevision(event.revision.toString());
    recorded.setPreparePosition(event.position.prepare.toString());
    recorded.setCommitPosition(event.position.commit.toString());
    const metadata = recorded.getMetadataMap();
    metadata.set('type', event.type);
    metadata.set('content-type', event.contentType);
    metadata.set('created', event.created.toString());
    recorded.setData(event.data);
    recorded.setCustomMetadata(event.metadata);
    const read = new streamsPb.ReadResp.ReadEvent();
    read.setEvent(recorded);
    read.setCommitPosition(event.position.commit.toString());
    const response = new streamsPb.ReadResp();
    response.setEvent(read);
    return response;
  };

  const positionMessage = <T extends { setCommitPosition(v: string): T; setPreparePosition(v: string): T }>(
    message: T,
    position: LogPosition,
  ): T =>
    message.setCommitPosition(position.commit.toString()).setPreparePosition(position.prepare.toString());

  const streamsImplementation: Grpc.UntypedServiceImplementation = {
    read(call: Grpc.ServerWritableStream<ReadReq, ReadResp>) {
      count('read');
      const options = call.request.getOptions();
      if (!options) {
        call.emit('error', serviceError(grpc.status.INVALID_ARGUMENT, 'read request without options'));
        return;
      }
      if (deadlinePassed(call)) {
        call.emit('error', deadlineError());
        return;
      }
      const structured =
        options.getUuidOption()?.getContentCase() === ReadOptions.UUIDOption.ContentCase.STRUCTURED;
      const backwards = options.getReadDirection() === ReadOptions.ReadDirection.BACKWARDS;
      const subscription = options.getCountOptionCase() === ReadOptions.CountOptionCase.SUBSCRIPTION;
      const maxCount = subscription ? Number.POSITIVE_INFINITY : Number(options.getCount() || '0');
      try {
        if (options.getStreamOptionCase() === ReadOptions.StreamOptionCase.ALL) {
          if (subscription) subscribeToAll(call, options, structured);
          else readAll(call, options, structured, backwards, maxCount);
        } else if (subscription) {
          call.emit('error', serviceError(grpc.status.UNIMPLEMENTED, 'the stand-in subscribes to $all only'));
        } else {
          readStream(call, options, structured, backwards, maxCount);
        }
      } catch (fault) {
        call.emit('error', faultToError(fault));
      }
    },

    append(call: Grpc.ServerReadableStream<AppendReq, AppendResp>, callback: Grpc.sendUnaryData<AppendResp>) {
      count('append');
      let stream: string | undefined;
      let expected: ExpectedState = { kind: 'any' };
      const proposed: ProposedEvent[] = [];
      call.on('data', (request: AppendReq) => {
        if (request.hasOptions()) {
          const appendOptions = request.getOptions()!;
          stream = streamNameOf(appendOptions.getStreamIdentifier());
          const Case = streamsPb.AppendReq.Options.ExpectedStreamRevisionCase;
          switch (appendOptions.getExpectedStreamRevisionCase()) {
            case Case.REVISION:
              expected = { kind: 'revision', revision: BigInt(appendOptions.getRevision()) };
              break;
            case Case.NO_STREAM:
              expected = { kind: 'no_stream' };
              break;
            case Case.STREAM_EXISTS:
              expected = { kind: 'stream_exists' };
              break;
            default:
              expected = { kind: 'any' };
          }
        } else if (request.hasProposedMessage()) {
          proposed.push(proposedEvent(request.getProposedMessage()!));
        }
      });
      call.on('end', () => {
        void (async () => {
          if (stream === undefined) {
            callback(serviceError(grpc.status.INVALID_ARGUMENT, 'append without options'));
            return;
          }
          if (state.appendDelayMs > 0) await sleep(state.appendDelayMs);
          // A call whose deadline has passed is not written: the client has already given up on it.
          if (deadlinePassed(call) || call.cancelled) {
            callback(deadlineError());
            return;
          }
          const response = new streamsPb.AppendResp();
          try {
            const outcome = log.append(stream, expected, proposed);
            const success = new streamsPb.AppendResp.Success();
            if (outcome.revision < 0n) success.setNoStream(new sharedPb.Empty());
            else success.setCurrentRevision(outcome.revision.toString());
            if (outcome.position)
              success.setPosition(positionMessage(new streamsPb.AppendResp.Position(), outcome.position));
            else success.setNoPosition(new sharedPb.Empty());
            response.setSuccess(success);
          } catch (fault) {
            if (!(fault instanceof WrongExpectedVersionFault)) {
              callback(faultToError(fault));
              return;
            }
            response.setWrongExpectedVersion(wrongExpectedVersion(fault));
          }
          callback(null, response);
        })();
      });
    },

    batchAppend(call: Grpc.ServerDuplexStream<BatchAppendReq, BatchAppendResp>) {
      count('batchAppend');
      const pending = new Map<
        string,
        {
          stream: string;
          expected: ExpectedState;
          deadline: number;
          events: ProposedEvent[];
          correlation: UUIDMessage;
        }
      >();
      // One append at a time per call, in arrival order, as the server's writer queue does.
      let queue = Promise.resolve();
      call.on('data', (request: BatchAppendReq) => {
        const correlation = request.getCorrelationId()!;
        const key = uuidToString(correlation);
        let entry = pending.get(key);
        if (!entry) {
          const batchOptions = request.getOptions();
          if (!batchOptions) return; // a continuation whose head was never seen: nothing to answer to
          const Case = streamsPb.BatchAppendReq.Options.ExpectedStreamPositionCase;
          let expected: ExpectedState = { kind: 'any' };
          switch (batchOptions.getExpectedStreamPositionCase()) {
            case Case.STREAM_POSITION:
              expected = { kind: 'revision', revision: BigInt(batchOptions.getStreamPosition()) };
              break;
            case Case.NO_STREAM:
              expected = { kind: 'no_stream' };
              break;
            case Case.STREAM_EXISTS:
              expected = { kind: 'stream_exists' };
              break;
          }
          let deadline = Number.POSITIVE_INFINITY;
          if (batchOptions.hasDeadline21100()) deadline = batchOptions.getDeadline21100()!.toDate().getTime();
          else if (batchOptions.hasDeadline()) {
            const duration = batchOptions.getDeadline()!;
            deadline = Date.now() + duration.getSeconds() * 1000 + duration.getNanos() / 1e6;
          }
          entry = {
            stream: streamNameOf(batchOptions.getStreamIdentifier()),
            expected,
            deadline,
            events: [],
            correlation,
          };
          pending.set(key, entry);
        }
        entry.events.push(...request.getProposedMessagesList().map(proposedEvent));
        if (!request.getIsFinal()) return;
        pending.delete(key);
        const ready = entry;
        queue = queue.then(async () => {
          if (state.appendDelayMs > 0) await sleep(state.appendDelayMs);
          if (call.cancelled) return;
          call.write(batchAppendResult(ready));
        });
      });
      call.on('end', () => {
        void queue.then(() => call.end());
      });
    },

    delete(call: Grpc.ServerUnaryCall<DeleteReq, DeleteResp>, callback: Grpc.sendUnaryData<DeleteResp>) {
      count('delete');
      if (deadlinePassed(call)) return callback(deadlineError());
      const options = call.request.getOptions()!;
      const Case = streamsPb.DeleteReq.Options.ExpectedStreamRevisionCase;
      try {
        const position = log.softDelete(
          streamNameOf(options.getStreamIdentifier()),
          expectedOf(options.getExpectedStreamRevisionCase(), Case, () => options.getRevision()),
        );
        const response = new streamsPb.DeleteResp();
        response.setPosition(positionMessage(new streamsPb.DeleteResp.Position(), position));
        callback(null, response);
      } catch (fault) {
        callback(faultToError(fault));
      }
    },

    tombstone(
      call: Grpc.ServerUnaryCall<TombstoneReq, TombstoneResp>,
      callback: Grpc.sendUnaryData<TombstoneResp>,
    ) {
      count('tombstone');
      if (deadlinePassed(call)) return callback(deadlineError());
      const options = call.request.getOptions()!;
      const Case = streamsPb.TombstoneReq.Options.ExpectedStreamRevisionCase;
      try {
        const position = log.tombstone(
          streamNameOf(options.getStreamIdentifier()),
          expectedOf(options.getExpectedStreamRevisionCase(), Case, () => options.getRevision()),
        );
        const response = new streamsPb.TombstoneResp();
        response.setPosition(positionMessage(new streamsPb.TombstoneResp.Position(), position));
        callback(null, response);
      } catch (fault) {
        callback(faultToError(fault));
      }
    },
  };

  function batchAppendResult(entry: {
    stream: string;
    expected: ExpectedState;
    deadline: number;
    events: ProposedEvent[];
    correlation: UUIDMessage;
  }): BatchAppendResp {
    const response = new streamsPb.BatchAppendResp();
    response.setCorrelationId(entry.correlation);
    response.setStreamIdentifier(identifierOf(entry.stream));
    const error = (
      code: number,
      message: string,
      typeName: string,
      detail: { serializeBinary(): Uint8Array },
    ) => {
      const status = new statusPb.Status();
      status.setCode(code as never);
      status.setMessage(message);
      const any = new anyPb.Any();
      any.pack(detail.serializeBinary(), typeName);
      status.setDetails(any);
      response.setError(status);
      return response;
    };
    if (Date.now() >= entry.deadline) {
      return error(
        codePb.Code.DEADLINE_EXCEEDED,
        'Timeout',
        'event_store.client.Timeout',
        new sharedPb.Timeout(),
      );
    }
    try {
      const outcome = log.append(entry.stream, entry.expected, entry.events);
      const success = new streamsPb.BatchAppendResp.Success();
      if (outcome.revision < 0n) success.setNoStream(new emptyPb.Empty());
      else success.setCurrentRevision(outcome.revision.toString());
      if (outcome.position) {
        const position = new sharedPb.AllStreamPosition();
        success.setPosition(positionMessage(position, outcome.position));
      } else success.setNoPosition(new emptyPb.Empty());
      response.setSuccess(success);
      return response;
    } catch (fault) {
      if (fault instanceof WrongExpectedVersionFault) {
        const detail = new sharedPb.WrongExpectedVersion();
        if (fault.current === undefined) detail.setCurrentNoStream(new emptyPb.Empty());
        else detail.setCurrentStreamRevision(fault.current.toString());
        const expected = fault.expected;
        if (expected.kind === 'revision') detail.setExpectedStreamPosition(expected.revision.toString());
        else if (expected.kind === 'no_stream') detail.setExpectedNoStream(new emptyPb.Empty());
        else if (expected.kind === 'stream_exists') detail.setExpectedStreamExists(new emptyPb.Empty());
        else detail.setExpectedAny(new emptyPb.Empty());
        return error(
          codePb.Code.FAILED_PRECONDITION,
          fault.message,
          'event_store.client.WrongExpectedVersion',
          detail,
        );
      }
      if (fault instanceof StreamDeletedFault) {
        const detail = new sharedPb.StreamDeleted();
        detail.setStreamIdentifier(identifierOf(fault.stream));
        return error(
          codePb.Code.FAILED_PRECONDITION,
          fault.message,
          'event_store.client.StreamDeleted',
          detail,
        );
      }
      const message = fault instanceof Error ? fault.message : String(fault);
      return error(codePb.Code.UNKNOWN, message, 'event_store.client.Unknown', new sharedPb.Unknown());
    }
  }

  function readStream(
    call: Grpc.ServerWritableStream<ReadReq, ReadResp>,
    options: InstanceType<typeof ReadOptions>,
    structured: boolean,
    backwards: boolean,
    count: number,
  ): void {
    const streamOptions = options.getStream()!;
    const stream = streamNameOf(streamOptions.getStreamIdentifier());
    const { found, events } = log.readStream(stream);
    if (!found) {
      const notFound = new streamsPb.ReadResp.StreamNotFound();
      notFound.setStreamIdentifier(identifierOf(stream));
      const response = new streamsPb.ReadResp();
      response.setStreamNotFound(notFound);
      call.write(response);
      call.end();
      return;
    }
    const Case = ReadOptions.StreamOptions.RevisionOptionCase;
    const revisionCase = streamOptions.getRevisionOptionCase();
    let selected: LoggedEvent[];
    if (backwards) {
      const from =
        revisionCase === Case.REVISION
          ? BigInt(streamOptions.getRevision())
          : revisionCase === Case.START
            ? 0n
            : undefined;
      selected = events.filter((event) => from === undefined || event.revision <= from).reverse();
    } else {
      const from =
        revisionCase === Case.REVISION
          ? BigInt(streamOptions.getRevision())
          : revisionCase === Case.END
            ? undefined
            : 0n;
      selected = from === undefined ? [] : events.filter((event) => event.revision >= from);
    }
    for (const event of selected.slice(0, count)) call.write(readEvent(event, structured));
    call.end();
  }

  function readAll(
    call: Grpc.ServerWritableStream<ReadReq, ReadResp>,
    options: InstanceType<typeof ReadOptions>,
    structured: boolean,
    backwards: boolean,
    count: number,
  ): void {
    const allOptions = options.getAll()!;
    const Case = ReadOptions.AllOptions.AllOptionCase;
    const filter = filterOf(options);
    let from: LogPosition | 'start' | 'end' = backwards ? 'end' : 'start';
    if (allOptions.getAllOptionCase() === Case.POSITION) {
      const position = allOptions.getPosition()!;
      from = { commit: BigInt(position.getCommitPosition()), prepare: BigInt(position.getPreparePosition()) };
    } else if (allOptions.getAllOptionCase() === Case.END) from = 'end';
    else if (allOptions.getAllOptionCase() === Case.START) from = 'start';
    let events: LoggedEvent[];
    if (backwards) {
      // Backwards from a position reads what lies before it; forwards from a position includes it.
      events = (
        from === 'start'
          ? []
          : log.all.filter((e) => from === 'end' || comparePositions(e.position, from) < 0)
      ).reverse();
    } else {
      events =
        from === 'end'
          ? []
          : log.all.filter((e) => from === 'start' || comparePositions(e.position, from) >= 0);
    }
    let sent = 0;
    for (const event of events) {
      if (sent >= count) break;
      if (filter && !filter.matches(event)) continue;
      call.write(readEvent(event, structured));
      sent += 1;
    }
    call.end();
  }

  /**
   * Catch-up, then live, with no gap: catching up and registering for new writes happen in the same
   * synchronous step, and the log appends synchronously. Filtered subscriptions get a checkpoint every
   * `window × multiplier` events scanned and one when they catch up, as the server sends them.
   */
  function subscribeToAll(
    call: Grpc.ServerWritableStream<ReadReq, ReadResp>,
    options: InstanceType<typeof ReadOptions>,
    structured: boolean,
  ): void {
    const allOptions = options.getAll()!;
    const Case = ReadOptions.AllOptions.AllOptionCase;
    const filter = filterOf(options);
    const interval = filter ? filter.window * filter.multiplier : Number.POSITIVE_INFINITY;
    let scanned = 0;
    let last: LogPosition | undefined;
    const send = (response: ReadResp): void => {
      if (!call.cancelled && !call.destroyed) call.write(response);
    };
    const checkpoint = (position: LogPosition): void => {
      const message = positionMessage(new streamsPb.ReadResp.Checkpoint(), position);
      message.setTimestamp(timestampPb.Timestamp.fromDate(new Date()));
      const response = new streamsPb.ReadResp();
      response.setCheckpoint(message);
      send(response);
    };
    const deliver = (events: readonly LoggedEvent[]): void => {
      for (const event of events) {
        last = event.position;
        scanned += 1;
        if (!filter || filter.matches(event)) send(readEvent(event, structured));
        if (scanned % interval === 0) checkpoint(event.position);
      }
    };
    const confirmation = new streamsPb.ReadResp.SubscriptionConfirmation();
    confirmation.setSubscriptionId(randomUUID());
    const confirmed = new streamsPb.ReadResp();
    confirmed.setConfirmation(confirmation);
    send(confirmed);

    let after: LogPosition | undefined;
    switch (allOptions.getAllOptionCase()) {
      case Case.POSITION: {
        const position = allOptions.getPosition()!;
        after = {
          commit: BigInt(position.getCommitPosition()),
          prepare: BigInt(position.getPreparePosition()),
        };
        break;
      }
      case Case.END:
        after = log.head();
        break;
      default:
        after = undefined;
    }
    // A subscription from a position starts after it (reads include it, subscriptions do not).
    deliver(log.all.filter((event) => after === undefined || comparePositions(event.position, after) > 0));
    const position = last ?? after ?? { commit: 0n, prepare: 0n };
    if (filter) checkpoint(position);
    const caughtUp = new streamsPb.ReadResp.CaughtUp();
    caughtUp.setTimestamp(timestampPb.Timestamp.fromDate(new Date()));
    caughtUp.setPosition(positionMessage(new streamsPb.ReadResp.Position(), position));
    const caughtUpResponse = new streamsPb.ReadResp();
    caughtUpResponse.setCaughtUp(caughtUp);
    send(caughtUpResponse);
    const off = log.onWritten(deliver);
    subscriptions.add(call);
    const close = (): void => {
      off();
      subscriptions.delete(call);
    };
    call.on('cancelled', close);
    call.on('close', close);
    call.on('error', close);
  }

  server.addService(streamsGrpc.StreamsService, streamsImplementation);
  server.addService(featuresGrpc.ServerFeaturesService, {
    getSupportedMethods(
      _call: Grpc.ServerUnaryCall<unknown, unknown>,
      callback: Grpc.sendUnaryData<unknown>,
    ) {
      count('getSupportedMethods');
      const methods = new featuresPb.SupportedMethods();
      methods.setEventStoreServerVersion(options.serverVersion ?? '24.10.0');
      const add = (service: string, method: string, features: string[] = []): void => {
        const supported = new featuresPb.SupportedMethod();
        supported.setServiceName(service);
        supported.setMethodName(method);
        supported.setFeaturesList(features);
        methods.addMethods(supported);
      };
      const streams = 'event_store.client.streams.streams';
      add(streams, 'read', ['position', 'events']);
      add(streams, 'append');
      if (!options.withoutBatchAppend) add(streams, 'batchappend');
      add(streams, 'delete');
      add(streams, 'tombstone');
      add('event_store.client.server_features.serverfeatures', 'getsupportedmethods');
      add('event_store.client.gossip.gossip', 'read');
      callback(null, methods);
    },
  });

  const host = options.host ?? '127.0.0.1';
  let port = 0;
  server.addService(gossipGrpc.GossipService, {
    read(_call: Grpc.ServerUnaryCall<unknown, unknown>, callback: Grpc.sendUnaryData<unknown>) {
      count('gossip');
      const member = new gossipPb.MemberInfo();
      member.setInstanceId(uuidMessage('00000000-0000-4000-8000-000000000001', false));
      member.setTimeStamp(String(BigInt(Date.now()) * 10_000n));
      member.setState(gossipPb.MemberInfo.VNodeState.LEADER);
      member.setIsAlive(true);
      const endpoint = new gossipPb.EndPoint();
      endpoint.setAddress(host);
      endpoint.setPort(port);
      member.setHttpEndPoint(endpoint);
      const info = new gossipPb.ClusterInfo();
      info.addMembers(member);
      callback(null, info);
    },
  });

  port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${host}:${options.port ?? 0}`,
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => (error ? reject(error) : resolve(bound)),
    );
  });

  const standIn: KurrentStandIn = {
    port,
    url: `kurrentdb://${host}:${port}?tls=false`,
    log,
    calls,
    get appendDelayMs() {
      return state.appendDelayMs;
    },
    set appendDelayMs(value: number) {
      state.appendDelayMs = value;
    },
    async stop() {
      for (const call of subscriptions)
        call.emit('error', serviceError(grpc.status.UNAVAILABLE, 'server shutting down'));
      subscriptions.clear();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 500);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
  return standIn;
}

function wrongExpectedVersion(
  fault: WrongExpectedVersionFault,
): InstanceType<typeof streamsPb.AppendResp.WrongExpectedVersion> {
  const message = new streamsPb.AppendResp.WrongExpectedVersion();
  if (fault.current === undefined) message.setCurrentNoStream(new sharedPb.Empty());
  else message.setCurrentRevision(fault.current.toString());
  const expected = fault.expected;
  if (expected.kind === 'revision') message.setExpectedRevision(expected.revision.toString());
  else if (expected.kind === 'no_stream') message.setExpectedNoStream(new sharedPb.Empty());
  else if (expected.kind === 'stream_exists') message.setExpectedStreamExists(new sharedPb.Empty());
  else message.setExpectedAny(new sharedPb.Empty());
  return message;
}

function expectedOf(
  which: number,
  Case: { REVISION: number; NO_STREAM: number; STREAM_EXISTS: number },
  revision: () => string,
): ExpectedState {
  if (which === Case.REVISION) return { kind: 'revision', revision: BigInt(revision()) };
  if (which === Case.NO_STREAM) return { kind: 'no_stream' };
  if (which === Case.STREAM_EXISTS) return { kind: 'stream_exists' };
  return { kind: 'any' };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
