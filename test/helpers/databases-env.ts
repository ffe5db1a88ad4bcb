export interface ServerLogin {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface TestDatabases {
  postgres: ServerLogin;
  mysql: ServerLogin;
}

/** Reads the KEY=VALUE file written by scripts/test-databases.sh. */
export function parseEnvFile(text: string): TestDatabases {
  const env = Object.fromEntries(
    text
      .split('\n')
      .filter((line) => line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  const login = (prefix: string): ServerLogin => ({
    host: env[`${prefix}_HOST`]!,
    port: Number(env[`${prefix}_PORT`]),
    user: env[`${prefix}_USER`]!,
    password: env[`${prefix}_PASSWORD`]!,
    database: env[`${prefix}_DATABASE`]!,
  });
  return { postgres: login('REKEY_TEST_PG'), mysql: login('REKEY_TEST_MYSQL') };
}
