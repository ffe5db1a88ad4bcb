import type { Sealed } from '../sealed.ts';
import type { LeakReport } from '../leak.ts';

/**
 * A scanner's own API, where it has one (GitHub secret scanning). Contract: `fetchLeakedValue`
 * returns the value for a report that has `fetch` (undefined when the alert has none);
 * `resolveAlert` closes the scanner's finding as revoked with a comment and returns false when the
 * report's source has no API to do so. Errors name the alert, never the value.
 */
export interface AlertApi {
  fetchLeakedValue(report: LeakReport): Promise<Sealed<string> | undefined>;
  resolveAlert(report: LeakReport, comment: string): Promise<boolean>;
}
