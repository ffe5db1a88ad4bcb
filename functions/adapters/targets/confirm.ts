import { RekeyError, TargetError } from '#core/errors.ts';
import type { SetPasswordOptions } from '#core/ports/target.ts';
import type { Sealed } from '#core/sealed.ts';

/**
 * The tail of a target's setPassword (ports/target.ts, SetPasswordOptions): run `confirm` while
 * the acting session is still open; if it throws, set `restoreTo` back through `restore` (that same
 * session). Returns confirm's error, for the caller to rethrow as it is (outside its own wrapping of
 * driver errors: it is the engine's); throws RESTORE_FAILED, naming the user only, when putting the
 * previous password back failed too.
 */
export async function confirmOrRestore(
  options: SetPasswordOptions | undefined,
  username: string,
  restore: (password: Sealed<string>) => Promise<void>,
): Promise<{ error: unknown } | undefined> {
  if (!options?.confirm) return undefined;
  try {
    await options.confirm();
    return undefined;
  } catch (error) {
    if (!options.restoreTo) return { error };
    try {
      await restore(options.restoreTo);
    } catch (restoreError) {
      const why = error instanceof RekeyError ? ` (${error.code})` : '';
      throw new TargetError(
        'RESTORE_FAILED',
        `the new password of ${username} was not confirmed${why} and the previous one could not be put back: ${username} has the AWSPENDING password; rerun the rotation to finish it`,
        { cause: restoreError },
      );
    }
    return { error };
  }
}
