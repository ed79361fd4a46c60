/**
 * Every SQL migration directory, in one list: the app and the command-line tools apply them all
 * (numbering: 0xxx event store, 1xxx read model, 2xxx runtime, 3xxx WhatsApp adapter, 4xxx sinks, 5xxx cluster).
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const MIGRATION_DIRECTORIES: readonly string[] = [
  join(root, 'src/store/migrations'),
  join(root, 'projections/migrations'),
  join(root, 'src/runtime/migrations'),
  join(root, 'src/whatsapp/baileys/migrations'),
  join(root, 'src/sinks/migrations'),
  join(root, 'src/cluster/migrations'),
];
