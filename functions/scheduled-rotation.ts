import { parseDuration } from '#core/duration.ts';
import { sweep, type SweepReport } from '#core/sweep.ts';
import { config } from '#runtime/config.ts';
import { lambdaServices } from '#runtime/services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';

/**
 * The schedule tick (EventBridge): rotate what is older than its max age (RotateSecret on AWS),
 * revoke AWSPREVIOUS past its grace, report stuck pendings. The event carries nothing we need.
 */
export const createHandler = (options: Partial<HandlerOptions> = {}) =>
  lambdaHandler<unknown, SweepReport>(
    'scheduled-rotation',
    async (_event, { services }) => {
      const settings = config();
      return sweep(services.deps, services.trigger, {
        concurrency: settings.REKEY_SWEEP_CONCURRENCY,
        stuckAfterMs: parseDuration(settings.REKEY_STUCK_AFTER, 'REKEY_STUCK_AFTER'),
      });
    },
    { errors: 'throw', services: lambdaServices, ...options },
  );

export const handler = createHandler();
