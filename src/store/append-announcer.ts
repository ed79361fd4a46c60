/**
 * The onAppended and onNewEvents listeners of one event log (the EventLog port), told of appends and of
 * new events; every adapter has the same rules, so they live here once. A listener's failure is its own
 * business: the append it hears of has committed, and the other listeners still hear of it.
 */
import type { AppendResult, Checkpoint } from './port.ts';

type AppendedListener = (result: AppendResult, stream: string) => void;
type NewEventsListener = (position?: Checkpoint) => void;

export class AppendAnnouncer {
  private readonly appendedListeners = new Set<AppendedListener>();
  private readonly newEventsListeners = new Set<NewEventsListener>();

  /** True while anyone waits for new events (an adapter may keep a server feed open only then). */
  get hasNewEventsListeners(): boolean {
    return this.newEventsListeners.size > 0;
  }

  onAppended(listener: AppendedListener): () => void {
    this.appendedListeners.add(listener);
    return () => {
      this.appendedListeners.delete(listener);
    };
  }

  onNewEvents(listener: NewEventsListener): () => void {
    this.newEventsListeners.add(listener);
    return () => {
      this.newEventsListeners.delete(listener);
    };
  }

  /** An append of this process committed: its listeners hear of it, then the new-events ones. */
  appended(result: AppendResult, stream: string): void {
    for (const listener of this.appendedListeners) {
      try {
        listener(result, stream);
      } catch {
        // see the module comment
      }
    }
    this.announce(result.position);
  }

  /** New events exist, from this process or another (a NOTIFY, a server push). */
  announce(position?: Checkpoint): void {
    for (const listener of this.newEventsListeners) {
      try {
        listener(position);
      } catch {
        // see the module comment
      }
    }
  }

  clear(): void {
    this.appendedListeners.clear();
    this.newEventsListeners.clear();
  }
}
