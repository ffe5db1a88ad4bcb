import { randomInt } from 'node:crypto';
import { ValidationError } from './errors.ts';
import { Sealed } from './sealed.ts';

export interface PasswordPolicy {
  length: number;
  /** Characters never used. Default: those that break URLs, .pgpass files and shells. */
  exclude: string;
}

export const DEFAULT_PASSWORD_POLICY: PasswordPolicy = { length: 32, exclude: ' :/@"\'\\`' };

const CLASSES = [
  'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
  'abcdefghijklmnopqrstuvwxyz',
  '0123456789',
  '!#$%&()*+,-.;<=>?[]^_{|}~:/@"\'\\` ',
];

/** A password with every character class present, from crypto.randomInt (uniform, no modulo bias). */
export function generatePassword(policy: PasswordPolicy = DEFAULT_PASSWORD_POLICY): Sealed<string> {
  const classes = CLASSES.map((chars) => [...chars].filter((c) => !policy.exclude.includes(c)).join('')).filter(
    (chars) => chars.length > 0,
  );
  if (!Number.isInteger(policy.length) || policy.length < Math.max(classes.length, 12) || policy.length > 128) {
    throw new ValidationError(`password length must be an integer from ${Math.max(classes.length, 12)} to 128`);
  }
  const all = classes.join('');
  const chars = classes.map((set) => set[randomInt(set.length)]!);
  while (chars.length < policy.length) chars.push(all[randomInt(all.length)]!);
  for (let i = chars.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chars[i], chars[j]] = [chars[j]!, chars[i]!];
  }
  return new Sealed(chars.join(''));
}

/** Per-secret overrides from tags `rekey:password-length` and `rekey:password-exclude`. */
export function passwordPolicyFromTags(tags: Record<string, string>): PasswordPolicy {
  const policy = { ...DEFAULT_PASSWORD_POLICY };
  const length = tags['rekey:password-length'];
  if (length !== undefined) {
    if (!/^\d+$/.test(length)) throw new ValidationError('tag rekey:password-length must be a number');
    policy.length = Number(length);
  }
  const exclude = tags['rekey:password-exclude'];
  if (exclude !== undefined) policy.exclude = exclude;
  return policy;
}
