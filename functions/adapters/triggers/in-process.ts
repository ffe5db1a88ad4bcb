import type { RotationTrigger } from '#core/ports/rotation-trigger.ts';
import type { RotationEngine } from '#core/rotation.ts';

/** Locally a rotation runs at once, in this process, through the same engine as the CLI. */
export class InProcessRotationTrigger implements RotationTrigger {
  readonly mode = 'in-process' as const;

  constructor(private readonly engine: RotationEngine) {}

  async rotate(secretId: string, request: Parameters<RotationTrigger['rotate']>[1]): Promise<{ versionId: string }> {
    const result = await this.engine.rotate(secretId, request);
    return { versionId: result.versionId };
  }
}
