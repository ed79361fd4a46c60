export {
  InspectionLog,
  DEFAULT_TIMELINE_CAPACITY,
  type TimelineEntry,
  type LiveState,
} from './inspection-log.ts';
export { BrowserSessions, SESSION_COOKIE, CSRF_HEADER } from './browser-session.ts';
export { machineDiagram, machineDot, machineVersion } from './diagram.ts';
export { replayHistory, stateAt, summariseContext, type HistoryEntry, type StateAt } from './history.ts';
export { activeStateIds, statePath } from './state-ids.ts';
