import { credentialKindContract } from './credential-kind.contract.ts';
import { databaseHarness } from './kind.database.ts';

credentialKindContract('mysql (single, own login)', () => databaseHarness('mysql', 'single'));
credentialKindContract('mysql (alternating, admin)', () => databaseHarness('mysql', 'alternating'));
