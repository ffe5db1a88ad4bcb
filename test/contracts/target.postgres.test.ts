import { PostgresTarget } from '#adapters/targets/postgres.ts';
import { targetContract } from './target.contract.ts';

// PostgreSQL records backend_start per session, so startedBefore can spare later sessions.
targetContract('postgres', () => new PostgresTarget(), { sparesSessionsAfterCutoff: true });
