import { ValidationError } from '#core/errors.ts';
import type { Target, TargetRegistry } from '#core/ports/target.ts';
import { PostgresTarget } from './postgres.ts';
import { MysqlTarget } from './mysql.ts';

/** One instance per target kind, built on first use so a run that only touches MySQL never loads pg pools. */
export class DatabaseTargets implements TargetRegistry {
  readonly #instances = new Map<string, Target>();
  readonly #factories: Record<string, () => Target> = {
    postgres: () => new PostgresTarget(),
    mysql: () => new MysqlTarget(),
  };
  readonly #kindOf: Record<string, string> = { postgres: 'postgres', mysql: 'mysql', mariadb: 'mysql' };

  forEngine(engine: string): Target {
    const kind = this.#kindOf[engine];
    if (!kind) throw new ValidationError(`no target for engine "${engine}"`);
    let target = this.#instances.get(kind);
    if (!target) {
      target = this.#factories[kind]!();
      this.#instances.set(kind, target);
    }
    return target;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#instances.values()].map((target) => target.close()));
    this.#instances.clear();
  }
}
