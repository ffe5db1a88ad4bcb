import { run, type CliIo } from '../../scripts/rekey.ts';
import type { ServiceOverrides } from '#runtime/services.ts';
import type { TestRekey } from './rekey.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI in-process the way a terminal would, against a test rekey's store: the CLI builds
 * its own bus, audit trail and chat channels from `env` (as `rekey` does), sharing only the store,
 * lock, logger and clock. Everything printed goes to the leak guard, except `get --reveal`.
 */
export function cliRunner(rekey: TestRekey, env: Record<string, string> = {}, overrides: Partial<ServiceOverrides> = {}) {
  const { events: _own, ...shared } = rekey.overrides;
  return async (...argv: string[]): Promise<CliRun> => {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = {
      stdout: (t) => void out.push(t),
      stderr: (t) => void err.push(t),
      readStdin: async () => '',
      env: { ...rekey.env, ...env },
      overrides: { ...shared, ...overrides },
    };
    const code = await run(argv, io);
    if (!argv.includes('--reveal')) rekey.guard.output(`rekey ${argv.join(' ')} stdout`, out.join(''));
    rekey.guard.output(`rekey ${argv.join(' ')} stderr`, err.join(''));
    return { code, stdout: out.join(''), stderr: err.join('') };
  };
}
