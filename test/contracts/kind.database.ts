import { randomBytes } from 'node:crypto';
import { DatabaseKind } from '#adapters/targets/database-kind.ts';
import { DatabaseTargets } from '#adapters/targets/registry.ts';
import { Sealed } from '#core/sealed.ts';
import { adminSecret, servers, tryLogin, uniqueName, type TestEngine } from '#test/helpers/databases.ts';
import { createUser, dropUser } from '#test/helpers/users.ts';
import type { KindHarness } from './credential-kind.contract.ts';

/**
 * The database kind on a real server, for one strategy. `single` runs without an admin (the user
 * changes its own password, so the old one dies at `apply`); `alternating` runs through the admin
 * (`masterarn`), and the old user keeps working until revoked.
 */
export function databaseHarness(engine: TestEngine, strategy: 'single' | 'alternating'): KindHarness {
  const created: string[] = [];
  const parse = (value: Sealed<string>) => JSON.parse(value.reveal()) as { username: string; password: string; port: number };
  return {
    kind: () => new DatabaseKind(new DatabaseTargets()),
    async fresh(extra) {
      const username = uniqueName('knd');
      created.push(username);
      const password = `Init-${randomBytes(12).toString('base64url')}`;
      await createUser(engine, username, password);
      const admin = adminSecret(engine);
      const adminId = `admin/${engine}`;
      const adminValue = new Sealed(JSON.stringify({ engine: admin.engine, host: admin.host, port: admin.port, username: admin.username, password: admin.password.reveal(), dbname: admin.dbname }));
      const s = servers()[engine];
      const value = {
        engine: admin.engine,
        host: s.host,
        port: s.port,
        username,
        password,
        dbname: s.database,
        ...(strategy === 'alternating' ? { masterarn: adminId } : {}),
        ...extra,
      };
      return { secretId: `db/${engine}/${username}`, value: new Sealed(JSON.stringify(value)), tags: { 'rekey:strategy': strategy }, secrets: new Map([[adminId, adminValue]]) };
    },
    async works(value) {
      const v = parse(value);
      return tryLogin(engine, v.username, v.password);
    },
    wrongSecret: (value) => value.map((json) => JSON.stringify({ ...JSON.parse(json), password: `Wrong-${randomBytes(9).toString('base64url')}` })),
    unreachable: (fixture) => ({ value: fixture.value.map((json) => JSON.stringify({ ...JSON.parse(json), host: '127.0.0.1', port: 1 })) }),
    secretsOf: (value) => [parse(value).password],
    invalid: (value) => [
      value.map((json) => JSON.stringify({ ...JSON.parse(json), password: undefined })),
      value.map((json) => JSON.stringify({ ...JSON.parse(json), host: undefined })),
      value.map((json) => JSON.stringify({ ...JSON.parse(json), engine: 'oracle' })),
    ],
    oldSurvivesApply: strategy === 'alternating',
    async cleanup() {
      for (const name of created) {
        await dropUser(engine, `${name}_clone`).catch(() => {});
        await dropUser(engine, name).catch(() => {});
      }
    },
  };
}
