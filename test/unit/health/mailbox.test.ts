/**
 * What the pipeline link reads of an instance's mailbox (since when its current job runs) and what the
 * "restart the actor" healing relies on: abandoning a job that never finishes unblocks the jobs behind it.
 */
import { describe, expect, it } from 'vitest';
import { Mailboxes } from '../../../src/runtime/mailbox.ts';

describe('Mailboxes for health', () => {
  it('says since when the running job runs, and nothing once the mailbox is idle', async () => {
    const mailboxes = new Mailboxes();
    expect(mailboxes.busySince('a')).toBeUndefined();
    let finish!: () => void;
    const before = Date.now();
    const job = mailboxes.run('a', () => new Promise<void>((resolve) => (finish = resolve)));
    await Promise.resolve();
    const since = mailboxes.busySince('a');
    expect(since).toBeGreaterThanOrEqual(before);
    expect(mailboxes.busySince('b')).toBeUndefined();
    finish();
    await job;
    expect(mailboxes.busySince('a')).toBeUndefined();
  });

  it('a stuck job holds the jobs behind it until it is abandoned; then they run', async () => {
    const mailboxes = new Mailboxes();
    void mailboxes.run('a', () => new Promise<void>(() => undefined));
    let ran = false;
    const behind = mailboxes.run('a', async () => {
      ran = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ran).toBe(false);
    expect(mailboxes.busySince('a')).toBeDefined();

    mailboxes.abandon('a');
    expect(mailboxes.busySince('a')).toBeUndefined();
    const after = mailboxes.run('a', async () => 'ran after the abandon');
    await expect(after).resolves.toBe('ran after the abandon');
    // The job queued behind the stuck one stays behind it: only new work is unblocked.
    expect(ran).toBe(false);
    void behind;
  });
});
