import { credentialKindContract } from './credential-kind.contract.ts';
import { databaseHarness } from './kind.database.ts';

credentialKindContract('postgres (single, own login)', () => databaseHarness('postgres', 'single'));
credentialKindContract('postgres (alternating, admin)', () => databaseHarness('postgres', 'alternating'));
