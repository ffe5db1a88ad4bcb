import { IAMClient } from '@aws-sdk/client-iam';
import { ValidationError } from '#core/errors.ts';
import type { CredentialKind, CredentialKindRegistry } from '#core/ports/credential-kind.ts';
import type { TargetRegistry } from '#core/ports/target.ts';
import { AwsIamUserKind } from './aws-iam-user.ts';
import { DatabaseKind } from './database-kind.ts';
import { HttpApiKeyKind } from './http-api-key.ts';
import { DatabaseTargets } from './registry.ts';

export interface CredentialKindsOptions {
  /** The database targets (default: PostgreSQL and MySQL/MariaDB, pools built on first use). */
  targets?: TargetRegistry;
  /** rekey's IAM client (default: one from the environment's credentials; IAM is global, the region only signs). */
  iam?: IAMClient;
  region?: string;
  /** Replace or add kinds (tests). */
  extra?: CredentialKind[];
}

/**
 * Every credential kind rekey rotates, by the `engine` field of a value: databases, AWS IAM user
 * access keys and generic HTTP API keys. Nothing connects until a kind is used.
 */
export class CredentialKinds implements CredentialKindRegistry {
  readonly kinds: readonly CredentialKind[];
  readonly #byEngine = new Map<string, CredentialKind>();

  constructor(options: CredentialKindsOptions = {}) {
    const region = options.region ?? 'us-east-1';
    this.kinds = [
      ...(options.extra ?? []),
      new DatabaseKind(options.targets ?? new DatabaseTargets()),
      // Building a client connects nothing: credentials are resolved on its first call.
      new AwsIamUserKind({ iam: options.iam ?? new IAMClient({ region, maxAttempts: 4 }), region }),
      new HttpApiKeyKind(),
    ];
    for (const kind of this.kinds) for (const engine of kind.engines) if (!this.#byEngine.has(engine)) this.#byEngine.set(engine, kind);
  }

  forEngine(engine: string): CredentialKind {
    const kind = typeof engine === 'string' ? this.#byEngine.get(engine.toLowerCase()) : undefined;
    if (!kind) throw new ValidationError(`unsupported engine "${String(engine).slice(0, 40)}" (known: ${[...this.#byEngine.keys()].join(', ')})`, 'SECRET_INVALID');
    return kind;
  }

  async close(): Promise<void> {
    await Promise.all(this.kinds.map((kind) => kind.close()));
  }
}
