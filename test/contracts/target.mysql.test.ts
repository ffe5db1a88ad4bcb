import { MysqlTarget } from '#adapters/targets/mysql.ts';
import { targetContract } from './target.contract.ts';

// MySQL and MariaDB record no session start time (PROCESSLIST.TIME is the time spent in the
// current state, reset by every statement), so endSessions({ startedBefore }) cannot tell a session
// opened after the cutoff from one opened before it and ends them all: safe for a revoke.
targetContract('mysql', () => new MysqlTarget(), { sparesSessionsAfterCutoff: false });
