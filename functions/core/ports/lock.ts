/**
 * Mutual exclusion for one secret's rotation across processes. `tryWithLock` runs `fn` holding the
 * lock, or returns `{ acquired: false }` at once when another holder has it. On AWS, Secrets
 * Manager serialises rotations itself and the adapter is a no-op.
 */
export interface SecretLock {
  tryWithLock<T>(secretId: string, fn: () => Promise<T>): Promise<{ acquired: true; value: T } | { acquired: false }>;
}

export const noLock: SecretLock = {
  async tryWithLock(_secretId, fn) {
    return { acquired: true, value: await fn() };
  },
};
