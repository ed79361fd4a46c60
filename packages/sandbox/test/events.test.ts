/**
 * Milestone 6: the other things that happen to a linked device — calls (and rejecting them), group
 * changes, presence and typing, contacts, push name, labels and profile pictures — each checked on
 * both sides: the Baileys event and what the sandbox recorded.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSandbox, type AccountInfo, type Sandbox } from '../src/index.ts';
import { linkDevice, type BaileysClient } from './support/baileys-sandbox.ts';

let sandbox: Sandbox;
let alice: AccountInfo;
let bob: AccountInfo;
let carol: AccountInfo;
let dave: AccountInfo;
let aliceDevice: BaileysClient;
let carolDevice: BaileysClient;

beforeAll(async () => {
  sandbox = await startSandbox({ smallPreKeyBatches: true });
  alice = sandbox.control.createAccount({ name: 'Alice' });
  bob = sandbox.control.createAccount({ name: 'Bob' });
  carol = sandbox.control.createAccount({ name: 'Carol' });
  dave = sandbox.control.createAccount({ name: 'Dave' });
  [aliceDevice, carolDevice] = await Promise.all([
    linkDevice(sandbox, alice.phoneNumber),
    linkDevice(sandbox, carol.phoneNumber),
  ]);
});

afterAll(async () => {
  await Promise.all([aliceDevice, carolDevice].map((c) => c?.end().catch(() => undefined)));
  await sandbox.close();
});

describe('calls', () => {
  test('an offer reaches Baileys as a call event and is acknowledged', async () => {
    const call = sandbox.control.startCall(bob.phoneNumber, alice.jid, { video: true });
    const [event] = await aliceDevice.waitFor('call', (calls) => calls.some((c) => c.id === call.callId));
    expect(event).toMatchObject({
      id: call.callId,
      from: bob.jid,
      chatId: bob.jid,
      status: 'offer',
      isVideo: true,
      isGroup: false,
    });
    await expect
      .poll(() =>
        sandbox.control
          .log(aliceDevice.sock.user!.id)
          .some((s) => s.dir === 'in' && s.tag === 'ack' && s.attrs.class === 'call'),
      )
      .toBe(true);
  });

  test('rejecting a call is answered (Baileys waits for the ack) and the caller sees it rejected', async () => {
    const call = sandbox.control.startCall(bob.phoneNumber, alice.jid);
    const [event] = await aliceDevice.waitFor('call', (calls) => calls.some((c) => c.id === call.callId));
    const started = Date.now();
    await aliceDevice.sock.rejectCall(event!.id, event!.from);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(sandbox.control.calls(bob.phoneNumber).find((c) => c.callId === call.callId)).toMatchObject({
      status: 'rejected',
      rejectedBy: aliceDevice.sock.user!.id,
    });
  });

  test('the caller hanging up terminates the call on the device', async () => {
    const call = sandbox.control.startCall(bob.phoneNumber, alice.jid);
    await aliceDevice.waitFor('call', (calls) =>
      calls.some((c) => c.id === call.callId && c.status === 'offer'),
    );
    sandbox.control.endCall(call.callId);
    const [ended] = await aliceDevice.waitFor('call', (calls) =>
      calls.some((c) => c.id === call.callId && c.status === 'terminate'),
    );
    expect(ended?.status).toBe('terminate');
  });
});

describe('groups', () => {
  test('creation, participants and settings arrive as group events; metadata queries agree', async () => {
    const from = aliceDevice.events.length;
    const group = sandbox.control.createGroup(bob.phoneNumber, 'Trip', [alice.jid, carol.jid]);
    const [created] = await aliceDevice.waitFor('groups.upsert', (g) => g.some((x) => x.id === group.jid), {
      from,
    });
    expect(created).toMatchObject({ id: group.jid, subject: 'Trip', owner: bob.lid, ownerPn: bob.jid });
    expect(created?.participants.map((p) => p.phoneNumber).sort()).toEqual(
      [alice.jid, bob.jid, carol.jid].sort(),
    );

    sandbox.control.groupParticipantsAdd(group.jid, bob.jid, [dave.jid]);
    const added = await aliceDevice.waitFor(
      'group-participants.update',
      (u) => u.id === group.jid && u.action === 'add',
      { from },
    );
    expect(added).toMatchObject({ author: bob.lid, participants: [{ id: dave.lid, phoneNumber: dave.jid }] });

    sandbox.control.groupParticipantsUpdate(group.jid, bob.jid, 'promote', [alice.jid]);
    await aliceDevice.waitFor(
      'group-participants.update',
      (u) => u.id === group.jid && u.action === 'promote',
      { from },
    );

    // One change per notification and wait: Baileys' event buffer keeps only the first groups.update
    // per group while it buffers, so two changes sent back to back can surface as one.
    sandbox.control.groupUpdate(group.jid, bob.jid, { subject: 'Trip 2026' });
    await aliceDevice.waitFor(
      'groups.update',
      (u) => u.some((g) => g.id === group.jid && g.subject === 'Trip 2026'),
      { from },
    );
    sandbox.control.groupUpdate(group.jid, bob.jid, { announce: true });
    await aliceDevice.waitFor(
      'groups.update',
      (u) => u.some((g) => g.id === group.jid && g.announce === true),
      { from },
    );

    const metadata = await aliceDevice.sock.groupMetadata(group.jid);
    expect(metadata).toMatchObject({ subject: 'Trip 2026', announce: true, size: 4 });
    expect(metadata.participants.find((p) => p.phoneNumber === alice.jid)?.admin).toBe('admin');

    sandbox.control.groupParticipantsRemove(group.jid, bob.jid, [carol.jid]);
    const removed = await carolDevice.waitFor(
      'group-participants.update',
      (u) => u.id === group.jid && u.action === 'remove',
    );
    expect(removed.participants[0]).toMatchObject({ id: carol.lid, phoneNumber: carol.jid });
  });

  test('a device changes the group: the sandbox applies it and the other members hear of it', async () => {
    const group = sandbox.control.createGroup(alice.phoneNumber, 'Book club', [carol.jid]);
    await carolDevice.waitFor('groups.upsert', (g) => g.some((x) => x.id === group.jid));
    await aliceDevice.sock.groupUpdateSubject(group.jid, 'Book club (weekly)');
    expect(sandbox.control.group(group.jid).subject).toBe('Book club (weekly)');
    await carolDevice.waitFor('groups.update', (u) =>
      u.some((g) => g.id === group.jid && g.subject === 'Book club (weekly)'),
    );
    const result = await aliceDevice.sock.groupParticipantsUpdate(group.jid, [dave.jid], 'add');
    expect(result).toEqual([expect.objectContaining({ status: '200', jid: dave.jid })]);
    expect(sandbox.control.group(group.jid).participants.map((p) => p.jid)).toContain(dave.jid);
    const all = await aliceDevice.sock.groupFetchAllParticipating();
    expect(Object.keys(all)).toContain(group.jid);
  });
});

describe('presence and chat state', () => {
  test('a subscribed device hears the contact come online and type', async () => {
    await aliceDevice.sock.presenceSubscribe(bob.jid);
    await aliceDevice.waitFor(
      'presence.update',
      (u) => u.id === bob.jid && u.presences[bob.jid]?.lastKnownPresence === 'unavailable',
    );
    sandbox.control.setPresence(bob.phoneNumber, 'available');
    await aliceDevice.waitFor(
      'presence.update',
      (u) => u.id === bob.jid && u.presences[bob.jid]?.lastKnownPresence === 'available',
    );
    sandbox.control.sendChatState(bob.phoneNumber, alice.jid, 'composing');
    await aliceDevice.waitFor(
      'presence.update',
      (u) => u.id === bob.jid && u.presences[bob.jid]?.lastKnownPresence === 'composing',
    );
    sandbox.control.sendChatState(bob.phoneNumber, alice.jid, 'recording');
    await aliceDevice.waitFor(
      'presence.update',
      (u) => u.id === bob.jid && u.presences[bob.jid]?.lastKnownPresence === 'recording',
    );
  });

  test("the device's own typing reaches the contact's phone", async () => {
    await aliceDevice.sock.sendPresenceUpdate('composing', bob.jid);
    await expect
      .poll(
        () =>
          sandbox.control.chatStates(bob.phoneNumber).find((s) => s.fromDevice === aliceDevice.sock.user!.id)
            ?.state,
      )
      .toBe('composing');
  });
});

describe('contacts, push name and labels (app state)', () => {
  test('a contact saved on the phone reaches the device as contacts.upsert', async () => {
    const from = aliceDevice.events.length;
    await sandbox.control.setContact(alice.phoneNumber, { jid: bob.jid, fullName: 'Bobby Tables' });
    const [contact] = await aliceDevice.waitFor('contacts.upsert', (c) => c.some((x) => x.id === bob.jid), {
      from,
    });
    expect(contact).toMatchObject({ id: bob.jid, name: 'Bobby Tables', lid: bob.lid });
  });

  test('a new push name reaches the device through app state', async () => {
    await sandbox.control.setPushName(alice.phoneNumber, 'Alice B.');
    await aliceDevice.waitFor('creds.update', (u) => u.me?.name === 'Alice B.');
    expect(sandbox.control.account(alice.phoneNumber).name).toBe('Alice B.');
  });

  test('labels made on the phone arrive as labels.edit and labels.association', async () => {
    await sandbox.control.editLabel(alice.phoneNumber, { id: '7', name: 'VIP', color: 3 });
    const edit = await aliceDevice.waitFor('labels.edit', (l) => l.id === '7');
    expect(edit).toMatchObject({ name: 'VIP', color: 3, deleted: false });
    await sandbox.control.labelChat(alice.phoneNumber, '7', bob.jid);
    const association = await aliceDevice.waitFor('labels.association', (a) => a.association.labelId === '7');
    expect(association).toMatchObject({
      type: 'add',
      association: { type: 'label_jid', chatId: bob.jid, labelId: '7' },
    });
  });

  test('a label the device puts on a chat is decoded by the phone', async () => {
    await aliceDevice.sock.addChatLabel(carol.jid, '7');
    expect(sandbox.control.appStateMutations(alice.phoneNumber)).toContainEqual(
      expect.objectContaining({
        collection: 'regular',
        index: ['label_jid', '7', carol.jid],
        action: expect.objectContaining({ labelAssociationAction: { labeled: true } }),
      }),
    );
  });

  test('a contact changing its profile picture reaches the device as contacts.update', async () => {
    sandbox.control.setProfilePicture(bob.phoneNumber);
    const [update] = await aliceDevice.waitFor('contacts.update', (u) =>
      u.some((c) => c.id === bob.jid && c.imgUrl === 'changed'),
    );
    expect(update?.imgUrl).toBe('changed');
  });
});
