/**
 * A poison event for the instances projection: a second InstanceCreated with a name already taken breaks
 * rm_instances_name_key every time, so the projection skips it and keeps it as a dead letter.
 */
import type { AppendResult, EventLog } from '../../src/store/port.ts';

export function appendPoisonInstance(
  store: Pick<EventLog, 'append'>,
  instanceId: string,
  takenName: string,
): Promise<AppendResult> {
  return store.append(
    `instance-${instanceId}`,
    [
      {
        type: 'InstanceCreated',
        data: {
          at: new Date().toISOString(),
          instanceId,
          name: takenName,
          createdBy: 'admin',
          advancedSettings: {},
          sinks: {
            webhookUrl: null,
            events: ['MESSAGE'],
            rabbitmqEnable: false,
            websocketEnable: false,
            natsEnable: false,
          },
          proxy: null,
        },
      },
    ],
    { expectedVersion: 'no_stream' },
  );
}
