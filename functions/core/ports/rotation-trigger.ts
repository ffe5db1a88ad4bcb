import type { ActionContext } from '../events.ts';

/**
 * Starts a rotation. On AWS it asks Secrets Manager (RotateSecret), which then drives the
 * rotate-secret Lambda through the four steps; locally it runs the engine in-process.
 * Resolves once the rotation is started (AWS) or done (local).
 */
export interface RotationTrigger {
  readonly mode: 'async' | 'in-process';
  /** On AWS only the secret id travels (RotateSecret has no field for who or why). */
  rotate(secretId: string, request: ActionContext): Promise<{ versionId?: string }>;
}
